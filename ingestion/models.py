"""Write-side records: one Load per call of the loader, and the quarantine of rejected rows."""

from __future__ import annotations

import uuid

from django.db import models


class Load(models.Model):
    """One run of ``ingestion.loader`` (a file, a table or an API batch) and its outcome."""

    class Status(models.TextChoices):
        LOADING = "loading"
        DONE = "done"
        REJECTED = "rejected"
        FAILED = "failed"
        ABANDONED = "abandoned"  # its process died (killed, lost); an upload's next attempt took over

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.CharField(max_length=32)
    source = models.TextField(help_text="file name, or a description of the caller")
    feed = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="the source the rows come from (a vendor, curation), ranked by TSM_FEED_PRECEDENCE; '' = unnamed",
    )
    reassert = models.BooleanField(
        default=False, help_text="rows equal to a superseded version were stored again as current (deliberate)"
    )
    requested_by = models.CharField(
        max_length=150, blank=True, default="", help_text="who asked for the load (user, token, command)"
    )
    on_error = models.CharField(max_length=8, default="reject")
    bar_interval = models.DurationField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LOADING)
    rows_read = models.BigIntegerField(default=0)
    inserted = models.BigIntegerField(default=0)
    revised = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    resent = models.BigIntegerField(
        default=0, help_text="of the duplicates: rows equal to a superseded or outranked version, not the current one"
    )
    outranked = models.BigIntegerField(
        default=0, help_text="rows kept as outranked versions: a higher-ranked feed's version stays current"
    )
    recorded_at = models.DateTimeField(null=True, blank=True, help_text="recorded_at of the versions it stored")
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # replay shortcut (ingestion.loader.replay_*): a file re-sent unchanged is recognised by its bytes
    content_sha256 = models.CharField(
        max_length=64, blank=True, default="", help_text="sha256 of the input bytes as read (compressed if gzip)"
    )
    content_bytes = models.BigIntegerField(null=True, blank=True, help_text="size of the input in bytes")
    replay_key = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_index=True,
        help_text="sha256 of content + dataset + bar interval + on_error + format + rules version",
    )
    replay_spans = models.JSONField(
        null=True, blank=True, help_text="per series [symbol, subkey, first_time, last_time] the load covered"
    )
    change_watermark = models.BigIntegerField(
        null=True, blank=True, help_text="last change-log id of the dataset when the load finished"
    )
    replay_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="set when the replay shortcut was taken: the earlier load with the same content",
    )
    replay_note = models.TextField(blank=True, default="", help_text="why the replay shortcut was or was not taken")

    class Meta:
        ordering = ["-started_at"]
        # a version's load (its feed, file, who): the load of the same dataset and recorded_at
        indexes = [models.Index(fields=["dataset", "recorded_at"], name="ingestion_load_recorded")]

    def __str__(self) -> str:
        return f"{self.dataset} {self.source} ({self.status})"


class ResentRow(models.Model):
    """An input row that equalled a superseded or outranked version of its (key, known_at): not stored.

    Tells staff that a feed re-sent values they had fixed (or that a higher-ranked feed overrides)."""

    class Kind(models.TextChoices):
        SUPERSEDED = "superseded"
        OUTRANKED = "outranked"

    load = models.ForeignKey(Load, on_delete=models.CASCADE, related_name="resent_rows")
    key = models.JSONField(help_text="the row's key columns")
    known_at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    current_recorded_at = models.DateTimeField(
        null=True, blank=True, help_text="recorded_at of the version current for the (key, known_at)"
    )

    class Meta:
        ordering = ["load", "id"]

    def __str__(self) -> str:
        return f"{self.key} known {self.known_at:%Y-%m-%d %H:%M:%S} ({self.kind})"


class RejectedRow(models.Model):
    """A bad input row kept with its raw values and the reason, so staff can fix and re-send it."""

    load = models.ForeignKey(Load, on_delete=models.CASCADE, related_name="rejected_rows")
    row_number = models.BigIntegerField(help_text="1-based data row of the input (header excluded)")
    column = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField()
    raw = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["load", "row_number"]
        indexes = [models.Index(fields=["load", "row_number"], name="ingestion_rejected_load_row")]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"


class Upload(models.Model):
    """A file staff uploaded through the admin; a Celery worker loads it through the loader."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        VALIDATING = "validating"
        LOADING = "loading"
        DONE = "done"
        FAILED = "failed"

    ACTIVE = (Status.VALIDATING, Status.LOADING)

    dataset = models.CharField(max_length=32)
    file = models.FileField(upload_to="uploads/%Y/%m/%d/", max_length=255)
    original_name = models.CharField(max_length=255, blank=True, default="")
    size = models.BigIntegerField(default=0)
    bar_interval = models.DurationField(null=True, blank=True, help_text="market data: bar length (default 1 minute)")
    on_error = models.CharField(
        max_length=8, default="reject", choices=[("reject", "reject the file"), ("skip", "quarantine bad rows")]
    )
    uploaded_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    feed = models.CharField(
        max_length=64, blank=True, default="", help_text="the source the rows come from (TSM_FEED_PRECEDENCE)"
    )
    reassert = models.BooleanField(
        default=False, help_text="rows equal to a superseded version become current again (deliberate)"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows_read = models.BigIntegerField(default=0, help_text="rows processed so far (validated, and stored or staged)")
    rows_total = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="rows in the file, when known (Parquet metadata; lines of a plain CSV / NDJSON)",
    )
    bytes_read = models.BigIntegerField(
        default=0, help_text="bytes of the stored file read so far (the parser reads ahead of the rows done)"
    )
    percent = models.FloatField(default=0.0, help_text="rows processed / rows_total (0 while the total is unknown)")
    inserted = models.BigIntegerField(default=0)
    revised = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    resent = models.BigIntegerField(
        default=0, help_text="of the duplicates: re-sends of superseded (or outranked) versions, not stored"
    )
    outranked = models.BigIntegerField(
        default=0, help_text="rows kept as outranked versions: a higher-ranked feed's version stays current"
    )
    error = models.TextField(blank=True, default="")
    load = models.ForeignKey(Load, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads")
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(
        max_length=255, blank=True, default="", help_text="host:pid of the process running the current attempt"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="last heartbeat of the attempt (every TSM_UPLOAD_HEARTBEAT_SECONDS)"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name or self.file.name} → {self.dataset} ({self.status})"


class IngestBatch(models.Model):
    """Rows accepted by the write API, durable in PostgreSQL until a flush merges them.

    ``payload`` holds the validated rows as an Arrow IPC stream (known_at already resolved), so an
    accepted row never lives only in Redis or in a worker's memory. A flush merges batches with the
    same ``feed`` and ``reassert`` into one load (``buffer._groups``).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        MERGED = "merged"
        FAILED = "failed"

    seq = models.BigAutoField(primary_key=True, help_text="arrival order (batches merge in this order)")
    id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    dataset = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    rows = models.IntegerField(default=0, help_text="rows accepted")
    rejected = models.IntegerField(default=0, help_text="rows quarantined (on_error=skip)")
    payload = models.BinaryField()
    submitted_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    feed = models.CharField(
        max_length=64, blank=True, default="", help_text="the source the rows come from (the token's feed, or ?feed=)"
    )
    reassert = models.BooleanField(default=False, help_text="?reassert=true: merged as a deliberate re-assertion")
    requested_by = models.CharField(
        max_length=150, blank=True, default="", help_text="who sent it: the token (prefix and user) or the session"
    )
    quarantine = models.ForeignKey(Load, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    load = models.ForeignKey(Load, null=True, blank=True, on_delete=models.SET_NULL, related_name="batches")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    merged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["dataset", "seq"], name="ingest_batch_pending", condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} batch {self.id} ({self.status})"


class InfluxBackupState(models.Model):
    """How the InfluxDB backup of one dataset is doing (the cursor itself is the change log's)."""

    dataset = models.CharField(max_length=32, unique=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True, help_text="last run that sent everything pending")
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    points_sent = models.BigIntegerField(default=0, help_text="points acknowledged by InfluxDB (re-sends included)")
    changes_done = models.BigIntegerField(default=0, help_text="change-log rows consumed")

    class Meta:
        verbose_name = "InfluxDB backup"
        verbose_name_plural = "InfluxDB backup"

    def __str__(self) -> str:
        return f"InfluxDB backup of {self.dataset}"
