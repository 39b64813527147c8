"""What a load reports: its counts and first errors (``LoadResult``), the refusal of a load with bad rows
(``LoadRejected``), and the quarantine of bad rows kept with their load (``rejected_rows_save``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from ingestion.checks import RowError
from ingestion.models import Load, RejectedRow
from timeseries.rules import feed_problem

ON_ERROR_MODES = ("reject", "skip")
MAX_REPORTED_ERRORS = 1000


@dataclass
class LoadResult:
    load_id: uuid.UUID
    dataset: str
    rows_read: int = 0
    inserted: int = 0
    revised: int = 0
    duplicates: int = 0
    rejected: int = 0
    resent: int = 0  # of ``duplicates``: rows equal to a superseded or outranked version, not the current one
    outranked: int = 0  # rows kept as outranked versions (a higher-ranked feed's version stays current)
    errors: list[RowError] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS
    recorded_at: datetime | None = None
    replay_of: uuid.UUID | None = None  # the replay shortcut was taken: the earlier load of the same bytes
    replay_note: str = ""
    change_watermark: int | None = None
    spans: list | None = None
    copied: int = 0  # of ``inserted``: rows COPYed straight into the dataset (no staging, see loader.direct)
    restarted: str = ""  # why a direct pass was rolled back and the load redone through staging

    def counts(self) -> dict[str, int]:
        return {
            "inserted": self.inserted,
            "revised": self.revised,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "resent": self.resent,
            "outranked": self.outranked,
        }


@dataclass(frozen=True)
class LoadOptions:
    """How a load treats rows equal to older versions, and whose word it carries (``loader.merge``)."""

    feed: str = ""
    reassert: bool = False
    requested_by: str = ""
    overrule: bool = False

    def check(self) -> None:
        problem = feed_problem(self.feed)
        if problem:
            raise ValueError(f"feed: {problem}")


class LoadRejected(Exception):
    """The input had bad rows and on_error="reject": nothing was stored."""

    def __init__(self, result: LoadResult):
        self.result = result
        shown = "; ".join(str(e) for e in result.errors[:5])
        more = f" (and {result.rejected - 5} more bad rows)" if result.rejected > 5 else ""
        super().__init__(f"{result.rejected} bad row(s), nothing stored: {shown}{more}")


def rejected_rows_save(*, load: Load, errors: list[RowError]) -> None:
    """Keep bad rows (raw values + reason) with their load, so staff can fix and re-send them."""
    RejectedRow.objects.bulk_create(
        [RejectedRow(load=load, row_number=e.row, column=e.column, reason=e.message, raw=e.raw) for e in errors],
        batch_size=5000,
    )
