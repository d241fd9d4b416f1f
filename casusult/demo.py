"""Demo data: users and posts for a fresh site, created idempotently with bulk inserts."""

import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from .models import Post

DEMO_USER_PREFIX = "demo"
DEMO_PASSWORD = "casusult-demo"
BATCH_SIZE = 5000


def demo_username(number):
    return f"{DEMO_USER_PREFIX}{number}"


def seed_demo(users, posts, progress=None):
    """Make sure demo users demo1..demoN exist and they have M posts between them.

    Running it again with the same numbers changes nothing. Returns (users created, posts created).
    """
    User = get_user_model()
    wanted = [demo_username(number) for number in range(1, users + 1)]
    existing = set(User.objects.filter(username__in=wanted).values_list("username", flat=True))
    password = make_password(DEMO_PASSWORD)  # hashed once: every demo user shares it
    new_users = [User(username=name, password=password) for name in wanted if name not in existing]
    User.objects.bulk_create(new_users, batch_size=BATCH_SIZE)

    authors = list(
        User.objects.filter(username__in=wanted).order_by("id").values_list("id", flat=True)
    )
    have = Post.objects.filter(author_id__in=authors).count()
    missing = max(0, posts - have)
    now = timezone.now()
    created = 0
    while created < missing:
        size = min(BATCH_SIZE, missing - created)
        batch = []
        for offset in range(size):
            number = have + created + offset
            batch.append(
                Post(
                    author_id=authors[number % len(authors)],
                    body=f"Demo post #{number + 1}: {secrets.choice(DEMO_LINES)}",
                    created_at=now - timedelta(minutes=missing - created - offset),
                )
            )
        with transaction.atomic():
            Post.objects.bulk_create(batch)
        created += size
        if progress:
            progress(created, missing)
    return len(new_users), created


DEMO_LINES = [
    "Looking for a designer for a two-week landing page job.",
    "Finished the translation batch, ready for review.",
    "Anyone up for a quick data-entry task this weekend?",
    "New logo drafts are in the shared folder.",
    "Hiring: part-time copywriter, remote, flexible hours.",
    "Thanks everyone for the feedback on the survey form!",
    "Bug bash tomorrow at 10:00, bring snacks.",
    "Posted a new illustration commission, budget inside.",
]
