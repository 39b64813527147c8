"""tsm settings: one environment-driven module with strict helpers (no secret is committed).

Settings own every default: the rest of the code reads ``settings.X``, never ``getattr(settings, "X",
default)``. docs/configuration.md lists every environment variable read here, with its default and
meaning (tests/test_docs.py checks the two against each other). Importing this module opens no
database connection: with TSM_TIMESCALEDB=auto the storage lane is chosen on the first connection
(tsm_site/lanes).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from tsm_site.lanes import engine_setting

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: expected one of {sorted(choices)}")
    return value


INTERVAL_RE = re.compile(
    r"\s*\d+\s*(microsecond|millisecond|second|minute|hour|day|week|month|year)s?\s*", re.IGNORECASE
)


def env_intervals(prefix: str, defaults: dict[str, str | None]) -> dict[str, str | None]:
    """Per-dataset PostgreSQL intervals ("7 days", "2 years"; "none" = no policy) from
    ``{prefix}_{DATASET}`` (e.g. TSM_RETENTION_MARKET_DATA=5 years), else the defaults."""
    out: dict[str, str | None] = {}
    for dataset, default in defaults.items():
        name = f"{prefix}_{dataset.upper()}"
        raw = os.environ.get(name)
        value = (default or "none") if raw is None else raw.strip().lower()
        if value in {"none", "off", ""}:
            out[dataset] = None
        elif INTERVAL_RE.fullmatch(value):
            out[dataset] = " ".join(value.split())
        else:
            raise ImproperlyConfigured(f"{name}={raw!r} is not an interval (e.g. '7 days', '2 years', or 'none')")
    return out


def env_feed_ranks(prefix: str, datasets: list[str]) -> dict[str, tuple[str, ...]]:
    """Per-dataset feed precedence from ``{prefix}_{DATASET}`` (e.g. TSM_FEED_PRECEDENCE_MARKET_DATA=
    "curation,vendor_x": highest first); unset or "" = no precedence (the newest version wins). The
    names are checked against timeseries.rules' feed rule by a system check (ingestion.apps)."""
    out: dict[str, tuple[str, ...]] = {}
    for dataset in datasets:
        name = f"{prefix}_{dataset.upper()}"
        feeds = tuple(f.strip() for f in os.environ.get(name, "").split(",") if f.strip())
        if len(set(feeds)) != len(feeds):
            raise ImproperlyConfigured(f"{name}={os.environ[name]!r} names a feed twice")
        out[dataset] = feeds
    return out


def development_secret_key(path: Path) -> str:
    """A random key generated once into ``path`` (mode 0600, under var/: never committed), so that
    manage.py and the tests work in a fresh shell. Serving in production sets SECRET_KEY instead."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: use that one
        return development_secret_key(path)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key


# DEBUG shows tracebacks and settings to whoever triggers an error: off unless asked for (DEBUG=true)
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
SECRET_KEY_FILE = Path(env_str("TSM_SECRET_KEY_FILE", str(BASE_DIR / "var" / "secret_key")))
SECRET_KEY_FROM_FILE = not SECRET_KEY  # serving in production must refuse this (a key generated on this machine)
if not SECRET_KEY:
    SECRET_KEY = development_secret_key(SECRET_KEY_FILE)
# error reports (the debug page, logged 500s) mask connection URLs too (tsm_site/errors.py)
DEFAULT_EXCEPTION_REPORTER_FILTER = "tsm_site.errors.MaskingExceptionReporterFilter"
ALLOWED_HOSTS = [h for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served locally (no CDN)
    "timeseries",
    "ingestion",
]

MIDDLEWARE = [
    "tsm_site.middleware.RequestGuardMiddleware",  # a malformed Content-Length, charset, query string...: 4xx first
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tsm_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "tsm_site.wsgi.application"

# --- Database and storage lane (docs/architecture.md, "Storage lanes") ----------------------------
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tsm")
TSM_TIMESCALEDB = env_choice("TSM_TIMESCALEDB", "auto", {"auto", "on", "off"})

DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
# on/off: the engine itself; auto: tsm_site.lanes, which asks the server once, on the first
# connection (never here: importing settings opens no connection)
DATABASES["default"]["ENGINE"] = engine_setting(TSM_TIMESCALEDB)
# JIT compilation costs 10-50 ms on queries the planner thinks are big (a 1,000-symbol market state,
# a merge) and never pays back for our index-driven queries.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TSM_TEST_DATABASE") or f"test_{DATABASES['default']['NAME']}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache and Celery broker ---------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("TSM_CACHE_PREFIX", "tsm"),
        "TIMEOUT": env_int("TSM_CACHE_TIMEOUT", 300),
        "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
    }
}
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("TSM_CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_TASK_DEFAULT_QUEUE = env_str("TSM_CELERY_QUEUE", "celery")  # tests give their workers and beat a private one
TSM_CURATION_SYNC_MAX_ROWS = env_int("TSM_CURATION_SYNC_MAX_ROWS", 50_000)  # larger admin curations run in Celery
# change-log entries (one per series and load) a beat run of the rollups / quality consumers takes on;
# the rest waits for the next run, so a write burst's backlog never holds the flushes' worker processes
TSM_CONSUMER_CHANGES_PER_RUN = env_int("TSM_CONSUMER_CHANGES_PER_RUN", 2_000)
CELERY_BEAT_SCHEDULE = {
    # every 10 s: an upload whose worker died (heartbeat older than TSM_UPLOAD_STALE_SECONDS) goes back to
    # the queue within seconds of a worker being available; a sweep nobody ran in time is dropped
    "reclaim-stale-uploads": {
        "task": "ingestion.tasks.uploads_reclaim_stale",
        "schedule": 10.0,
        "options": {"expires": 10},
    },
    "flush-write-buffers": {"task": "ingestion.tasks.flush_all_buffers", "schedule": 5.0},
    "quality-checks": {"task": "timeseries.quality_tasks.quality_check_pending", "schedule": 10.0},
    "retention": {"task": "timeseries.tasks.retention_run", "schedule": 3600.0},  # deletes past TSM_RETENTION
    "influx-backup": {"task": "ingestion.tasks.influx_backup", "schedule": 30.0},  # a no-op when off
    "refresh-rollups": {"task": "timeseries.tasks.rollups_refresh", "schedule": 5.0},
}

# --- Ingestion ------------------------------------------------------------------------------------
TSM_INGEST_BATCH_ROWS = env_int("TSM_INGEST_BATCH_ROWS", 250_000)
TSM_INGEST_DIRECT = env_bool(
    "TSM_INGEST_DIRECT", True
)  # COPY rows proven new straight into the dataset (the loader's direct path)
TSM_INGEST_REPLAY_SHORTCUT = env_bool(
    "TSM_INGEST_REPLAY_SHORTCUT", True
)  # a file re-sent unchanged skips staging (ingestion/replay.py)
# source precedence (docs/ingestion.md, "Re-deliveries and source precedence"): for one (key, known_at),
# a version from a feed ranked higher stays current when a lower-ranked feed later sends other values
TSM_FEED_PRECEDENCE = env_feed_ranks(
    "TSM_FEED_PRECEDENCE",
    ["market_data", "news_events", "insider_trades", "social_sentiment", "government_events"],
)
# the exchange (an exchange-calendars name, e.g. a MIC such as XNYS) whose sessions apply to a symbol
# without a known security (docs/calendars.md); `manage.py check` refuses a name the package does not know
TSM_DEFAULT_EXCHANGE = env_str("TSM_DEFAULT_EXCHANGE", "XNYS").strip()
TSM_UPLOAD_MAX_BYTES = env_int("TSM_UPLOAD_MAX_BYTES", 8 << 30)  # 8 GiB
# docs/workers.md: an upload's attempt heartbeats from a background thread; one silent for
# TSM_UPLOAD_STALE_SECONDS (or whose process is gone) is taken over by a redelivered task or re-queued by beat
TSM_UPLOAD_HEARTBEAT_SECONDS = float(env_str("TSM_UPLOAD_HEARTBEAT_SECONDS", "2"))
TSM_UPLOAD_STALE_SECONDS = env_int("TSM_UPLOAD_STALE_SECONDS", 10)
MEDIA_ROOT = Path(env_str("TSM_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "media/"
TSM_INGEST_MAX_BODY_BYTES = env_int("TSM_INGEST_MAX_BODY_BYTES", 64 << 20)  # write API request body
TSM_INGEST_FLUSH_ROWS = env_int("TSM_INGEST_FLUSH_ROWS", 1000)  # flush as soon as this many rows wait...
TSM_INGEST_FLUSH_SECONDS = float(env_str("TSM_INGEST_FLUSH_SECONDS", "1.0"))  # ...or when the oldest is this old
TSM_INGEST_BUFFER_MAX_ROWS = env_int("TSM_INGEST_BUFFER_MAX_ROWS", 200_000)  # ~2 s of merging; above: 429 + Retry-After
TSM_INGEST_RATE = env_str("TSM_INGEST_RATE", "6000/min")  # write API requests per token
DATA_UPLOAD_MAX_MEMORY_SIZE = TSM_INGEST_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 << 20

# --- InfluxDB backup of high-frequency market data (docs/influxdb-backup.md) ----------------------
TSM_INFLUX_URL = env_str("TSM_INFLUX_URL", "").strip().rstrip("/")  # unset: the backup is off
TSM_INFLUX_DB = env_str("TSM_INFLUX_DB", "tsm")
TSM_INFLUX_USER = env_str("TSM_INFLUX_USER", "")
TSM_INFLUX_PASSWORD = env_str("TSM_INFLUX_PASSWORD", "")
# subminute: bars finer than one minute (docs/influxdb-backup.md); all: every bar; off: nothing even with a URL
TSM_INFLUX_BACKUP = env_choice("TSM_INFLUX_BACKUP", "subminute", {"off", "subminute", "all"})
TSM_INFLUX_BATCH_LINES = env_int("TSM_INFLUX_BATCH_LINES", 20_000)  # points per POST /write
TSM_INFLUX_TIMEOUT = float(env_str("TSM_INFLUX_TIMEOUT", "60"))  # seconds per HTTP request

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

# --- Lifecycle: compression and retention (docs/lifecycle.md) -------------------------------------
# Override one dataset with e.g. TSM_COMPRESS_AFTER_MARKET_DATA="14 days" or TSM_RETENTION_NEWS_EVENTS=none,
# then run `manage.py lifecycle_apply` (TimescaleDB lane; migrations apply them on first migrate).
TSM_COMPRESS_AFTER = env_intervals(
    "TSM_COMPRESS_AFTER",
    {
        "market_data": "7 days",
        "news_events": "30 days",
        "social_sentiment": "3 days",
        "insider_trades": "30 days",
        "government_events": "30 days",
    },
)
TSM_RETENTION = env_intervals(
    "TSM_RETENTION",
    {
        "market_data": "10 years",
        "news_events": "10 years",
        "social_sentiment": "2 years",
        "insider_trades": "20 years",
        "government_events": "20 years",
    },
)
TSM_RETENTION_BATCH_ROWS = env_int("TSM_RETENTION_BATCH_ROWS", 10_000)  # rows per DELETE (plain lane)

# --- Read API (timeseries/api) --------------------------------------------------------------------
TSM_API_ANONYMOUS_READ = env_bool("TSM_API_ANONYMOUS_READ", False)  # let anonymous callers read
# a revoked token / deactivated user is refused by every server process within this many seconds
TSM_TOKEN_CACHE_SECONDS = env_int("TSM_TOKEN_CACHE_SECONDS", 10)
TSM_API_ASOF_MAX_POINTS = 2_000_000  # decision points one POST asof-join/ may send (more: 400)
# requests per token (per user / address without one), counted in the default cache; "none": no limit
TSM_API_RATE = env_str("TSM_API_RATE", "600/min").strip()
if TSM_API_RATE.lower() == "none":
    TSM_API_RATE = None
elif not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", TSM_API_RATE):
    raise ImproperlyConfigured(f"TSM_API_RATE={TSM_API_RATE!r}: expected N/s, N/min, N/hour, N/day or none")

REST_FRAMEWORK = {
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "timeseries.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["timeseries.api.auth.ReadScope"],
    "DEFAULT_THROTTLE_CLASSES": ["timeseries.api.auth.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": [
        "timeseries.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "timeseries.api.renderers.ContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "timeseries.api.views.exception_handler",  # Django's refusals (too many fields...) as 4xx
}
SPECTACULAR_SETTINGS = {
    "TITLE": "tsm read API",
    "DESCRIPTION": (
        "Point-in-time (bitemporal) time series: what was knowable at T, as recorded by S. "
        "Every answer that depends on T states at, recorded_by and max_recorded_at (JSON envelope, or "
        "X-TSM-At / X-TSM-Recorded-By / X-TSM-Max-Recorded-At headers for CSV, Parquet and Arrow); pass "
        "max_recorded_at as recorded_by to replay an answer exactly. Times are ISO 8601 with an offset."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SECURITY": [{"tokenAuth": []}],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # the default hook, then an OpenAPI link from a write's 202 to its batch status (ingestion/api.py)
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "ingestion.api.schema_links"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}
