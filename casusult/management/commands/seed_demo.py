"""manage.py seed_demo: demo users and posts, idempotent, bulk inserts."""

import sys

from django.core.management.base import BaseCommand, CommandError

from casusult.arguments import non_negative_int
from casusult.demo import DEMO_PASSWORD, demo_username, seed_demo
from casusult.models import Post


class Command(BaseCommand):
    help = (
        "Create demo users (demo1..demoN) and M posts between them; running it again adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--users", type=non_negative_int, default=20, help="number of demo users"
        )
        parser.add_argument(
            "--posts", type=non_negative_int, default=500, help="number of demo posts"
        )
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when the site already has posts"
        )

    def handle(self, *args, users, posts, if_empty=False, **options):
        if if_empty and Post.objects.exists():
            self.stdout.write("The site already has posts: no demo data added.")
            return
        if posts and not users:
            raise CommandError("--posts needs at least one user (--users 1 or more).")
        show_progress = posts >= 20000 and sys.stderr.isatty()

        def progress(done, total):
            if show_progress:
                width = 30
                filled = width * done // total
                sys.stderr.write(
                    f"\r  posts [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
                )
                if done == total:
                    sys.stderr.write("\n")

        new_users, new_posts = seed_demo(users, posts, progress=progress)
        self.stdout.write(f"Demo data: {new_users} users and {new_posts} posts created.")
        if users:
            self.stdout.write(
                f"Log in at /accounts/login/ as {demo_username(1)} (… {demo_username(users)}) "
                f"with the password {DEMO_PASSWORD!r}."
            )
