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

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.CharField(max_length=32)
    source = models.TextField(help_text="file name, or a description of the caller")
    on_error = models.CharField(max_length=8, default="reject")
    bar_interval = models.DurationField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LOADING)
    rows_read = models.BigIntegerField(default=0)
    inserted = models.BigIntegerField(default=0)
    revised = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    recorded_at = models.DateTimeField(null=True, blank=True, help_text="recorded_at of the versions it stored")
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.dataset} {self.source} ({self.status})"


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
