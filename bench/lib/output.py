"""Progress on stderr, the command line and the one JSON object on stdout."""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import UTC, datetime


def log(msg: str) -> None:
    """Progress on stderr, timestamped (stdout carries only the JSON answer)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def command_line() -> str:
    """This process's command line, shell-quoted (the JSON answer records what produced it)."""
    return " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])


def started_at() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def emit(out: dict, indent: int | None = 2) -> None:
    """The JSON answer on stdout (datetimes and other objects as strings)."""
    print(json.dumps(out, indent=indent, default=str), flush=True)
