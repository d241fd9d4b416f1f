"""python -m screenshots: fill a database of its own with a made-up history, serve it, take PNGs."""

import argparse
import os
import random
import sys
import urllib.parse
from datetime import timedelta
from pathlib import Path

import devservices
from screenshots import CHROMIUM_ARGS

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
USERNAME, PASSWORD = "screenshots", "screenshots-only-password"
BODIES = [
    "Logo for a ramen shop in Sapporo: warm, hand-drawn, no red",
    "Name our cat cafe (three cats, one grumpy)",
    "Translate a bakery menu into plain English",
    "Tagline for a bicycle repair co-op",
    "Cover art for a lo-fi album about rainy trains",
    "Which colour for a children's library sign?",
    "Slogan for a night market that only sells soup",
    "Icons for a recycling app: bottles, cans, paper",
]


def redis_db_url(text):
    parts = urllib.parse.urlsplit(text)
    if parts.path.strip("/") in ("", "0"):
        # It FLUSHDBs this database: never db 0, where development data lives.
        raise argparse.ArgumentTypeError(f"{text!r}: give a redis:// URL with a db other than 0")
    return text


def parser():
    p = argparse.ArgumentParser(prog="python -m screenshots", description=__doc__)
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/screenshots"),
        help="PostgreSQL database it may fill (created if missing; its history is replaced)",
    )
    p.add_argument(
        "--redis-url",
        type=redis_db_url,
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
        help="Redis database it may FLUSHDB (never db 0)",
    )
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Debian's chromium binary")
    p.add_argument("--output", type=Path, default=OUTPUT, help="folder for the PNGs")
    p.add_argument("--theme", choices=["light", "dark"], default="light", help="colour scheme")
    return p


def fill(seed=7):
    """Posts, a superuser, 90 days of history with a few hits, a ledger row, pending counts."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from casusult.models import Post
    from impressions import periods, stats
    from impressions.models import (
        DailyImpressions,
        Flush,
        HistoryRollup,
        OpenDailyImpressions,
        OpenDayLeaders,
        PeriodImpressions,
        SiteDailyImpressions,
    )
    from impressions.recorder import record_impressions
    from impressions.redis_client import get_flush_client

    call_command("migrate", verbosity=0, interactive=False)
    user_model = get_user_model()
    user = user_model.objects.filter(username=USERNAME).first()
    if user is None:
        user = user_model.objects.create_superuser(USERNAME, "shots@example.com", PASSWORD)
    Post.objects.all().delete()
    today = stats.today()
    posts = Post.objects.bulk_create(
        Post(author=user, body=body, created_at=timezone.now() - timedelta(days=90 - 11 * n))
        for n, body in enumerate(BODIES)
    )
    rng = random.Random(seed)
    daily, rollups, site = {}, {}, {}
    for rank, post in enumerate(posts):
        born = max(post.created_at.date(), today - timedelta(days=89))
        peak = 600 / (rank + 1) ** 0.8
        for age in range((today - born).days + 1):
            day = born + timedelta(days=age)
            count = int(peak * 0.85**age * rng.uniform(0.6, 1.3) + rng.random() * 4)
            if count <= 0:
                continue
            daily[post.id, day] = count
            site[day] = site.get(day, 0) + count
            if day == today:
                continue  # today is open: not in the week and month rows yet
            for key in (
                (periods.WEEK, periods.week_of(day)),
                (periods.MONTH, periods.month_of(day)),
            ):
                rollups[(*key, post.id)] = rollups.get((*key, post.id), 0) + count
    history = (DailyImpressions, OpenDailyImpressions, OpenDayLeaders, PeriodImpressions)
    for model in (*history, SiteDailyImpressions):
        model.objects.all().delete()
    # As the flush leaves them: the ended days rolled up, today's rows in the open table.
    DailyImpressions.objects.bulk_create(
        DailyImpressions(object_id=o, day=d, count=n) for (o, d), n in daily.items() if d < today
    )
    OpenDailyImpressions.objects.bulk_create(
        OpenDailyImpressions(object_id=o, day=d, count=n)
        for (o, d), n in daily.items()
        if d == today
    )
    OpenDayLeaders.objects.bulk_create(  # 8 posts: all of them lead today
        OpenDayLeaders(object_id=o, day=d, count=n) for (o, d), n in daily.items() if d == today
    )
    HistoryRollup.objects.update_or_create(
        id=1, defaults={"rolled_through": today - timedelta(days=1)}
    )
    PeriodImpressions.objects.bulk_create(
        PeriodImpressions(period=p, start=s, object_id=o, count=n)
        for (p, s, o), n in rollups.items()
    )
    SiteDailyImpressions.objects.bulk_create(
        SiteDailyImpressions(day=d, count=n) for d, n in site.items()
    )
    for post in posts:  # each total is what its history adds up to, as after real flushes
        post.impressions = sum(n for (o, _), n in daily.items() if o == post.id)
    Post.objects.bulk_update(posts, ["impressions"])
    Flush.objects.all().delete()
    finished = timezone.now() - timedelta(minutes=3)
    Flush.objects.create(
        id="screenshot-flush",
        started_at=finished - timedelta(milliseconds=412),
        finished_at=finished,
        outcome=Flush.Outcome.APPLIED,
        posts_updated=len(posts),
        impressions_applied=sum(n for (_, d), n in daily.items() if d == today),
    )
    get_flush_client().flushdb()
    for viewer in range(40):
        record_impressions(f"u:{viewer}", [post.id for post in rng.sample(posts, 3)])
    # The post chart shows the post with the most impressions of the last 30 days.
    (top_id, _), *_ = stats.top_posts(today - timedelta(days=29), today, 1)
    return Post.objects.get(pk=top_id)


def serve():
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    server = LiveServerThread("localhost", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    return server


# (file, viewport, path, element or None for the whole page); {post}: the post of the chart.
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SHOTS = [
    ("dashboard.png", DESKTOP, "/admin/impressions/dashboard/", None),
    ("dashboard-phone.png", PHONE, "/admin/impressions/dashboard/", None),
    ("post-chart.png", DESKTOP, "/admin/casusult/post/{post}/change/", ".impressions-history"),
    ("timeline-phone.png", PHONE, "/", None),
]


def shoot(url, post, options):
    """Log in once, then take each of SHOTS in its viewport; returns the files written."""
    from playwright.sync_api import sync_playwright

    options.output.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=options.chromium, args=CHROMIUM_ARGS)
        login = browser.new_context(viewport=DESKTOP)
        page = login.new_page()
        page.goto(f"{url}/admin/login/?next=/admin/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        cookies = login.cookies()
        for name, viewport, path, element in SHOTS:
            context = browser.new_context(
                viewport=viewport,
                device_scale_factor=1,
                is_mobile=viewport is PHONE,
                color_scheme=options.theme,
            )
            context.add_cookies(cookies)
            page = context.new_page()
            page.goto(url + path.format(post=post.id))
            target = options.output / name
            if element:
                page.locator(element).screenshot(path=str(target))
            else:
                page.screenshot(path=str(target), full_page=True)
            written.append(target)
            context.close()
        browser.close()
    return written


def main(argv=None):
    options = parser().parse_args(argv)
    if not os.access(options.chromium, os.X_OK):
        raise SystemExit(f"No Chromium at {options.chromium}: run `make browser`.")
    os.environ["DATABASE_URL"] = options.database_url
    os.environ["REDIS_URL"] = options.redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.test")
    devservices.ensure_database(options.database_url)
    import django

    django.setup()
    post = fill()
    server = serve()
    try:
        written = shoot(f"http://localhost:{server.port}", post, options)
    finally:
        server.terminate()
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
