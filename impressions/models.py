from django.db import models


class Flush(models.Model):
    """The flush ledger: one row per flush id; its presence with shards applied is the exactly-once gate."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "applied"
        EMPTY = "empty", "nothing pending"
        FAILED = "failed", "failed"

    id = models.CharField(primary_key=True, max_length=40)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    # Redis shards whose snapshot of this flush is in the database: never applied twice.
    shards_applied = models.JSONField(default=list, blank=True)
    posts_updated = models.PositiveIntegerField(default=0)
    impressions_applied = models.PositiveBigIntegerField(default=0)
    posts_dropped = models.PositiveIntegerField(default=0, help_text="posts that no longer exist")
    impressions_dropped = models.PositiveBigIntegerField(default=0)
    # Set when a later flush applied this flush's snapshot after it crashed or stalled.
    recovered_by = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["started_at"], name="flush_started_idx")]

    def __str__(self):
        return f"flush {self.id} ({self.outcome})"
