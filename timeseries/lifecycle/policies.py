"""Lifecycle policies: per dataset, the age after which chunks are compressed (``TSM_COMPRESS_AFTER``,
TimescaleDB lane) and rows removed (``TSM_RETENTION``), and the compression layout of each hypertable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from timeseries.datasets import DATASETS, Dataset, get_dataset


def datasets_selected(names: Iterable[str] | None) -> list[Dataset]:
    """The named datasets (every dataset when None)."""
    return [get_dataset(n) for n in names] if names is not None else list(DATASETS.values())


def compress_after(*, dataset: str) -> str | None:
    """The configured age after which chunks of ``dataset`` are compressed (None: never; always None
    for reference data, which is no hypertable)."""
    spec = get_dataset(dataset)
    return settings.TSM_COMPRESS_AFTER.get(spec.name) if spec.hypertable else None


def retention_horizon(*, dataset: str) -> str | None:
    """The configured age after which rows of ``dataset`` are removed (None: kept forever; always None
    for reference data: a security or a split of long ago still adjusts and resolves today's reads)."""
    spec = get_dataset(dataset)
    return settings.TSM_RETENTION.get(spec.name) if spec.hypertable else None


@dataclass(frozen=True)
class CompressionLayout:
    segmentby: tuple[str, ...]
    orderby: tuple[str, ...]

    def options(self) -> str:
        return ", ".join(self.segmentby), ", ".join(self.orderby)


def compression_layout(*, dataset: str) -> CompressionLayout:
    """Segment by the series columns (every point-in-time read filters on them), order by event time
    newest first (reads walk backwards from T), then the rest of the key and the version columns:
    so a batch holds one series, its min/max time prunes batches, and a key's versions sit together.
    """
    spec = get_dataset(dataset)
    rest = [k for k in spec.key if k not in spec.series and k != "time"]
    return CompressionLayout(
        segmentby=tuple(spec.series),
        orderby=("time DESC", *rest, "known_at DESC", "recorded_at DESC"),
    )
