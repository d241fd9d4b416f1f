"""The site's one model: a Post on the timeline, with its flushed impression count."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.text import Truncator


class Post(models.Model):
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="posts"
    )
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # Written only by the impressions flush, in bulk; never per view.
    impressions = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The timeline query: newest first, id breaks ties so paging is stable.
            models.Index(fields=["-created_at", "-id"], name="post_timeline_idx"),
        ]

    def __str__(self):
        # What the admin and the dashboard's top lists show: the post's words, not its ids.
        text = " ".join(self.body.split())
        return Truncator(text).chars(60) if text else f"Post {self.pk}"
