import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from casusult.models import Post

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_then_adds_nothing_on_rerun():
    call_command("seed_demo", users=3, posts=50)
    assert get_user_model().objects.filter(username__startswith="demo").count() == 3
    assert Post.objects.count() == 50
    call_command("seed_demo", users=3, posts=50)
    assert get_user_model().objects.filter(username__startswith="demo").count() == 3
    assert Post.objects.count() == 50


def test_seed_demo_tops_up_to_the_asked_numbers(client):
    call_command("seed_demo", users=2, posts=10)
    call_command("seed_demo", users=4, posts=30)
    assert get_user_model().objects.filter(username__startswith="demo").count() == 4
    assert Post.objects.count() == 30
    assert client.login(username="demo4", password="casusult-demo")


def test_seed_demo_needs_a_user_for_posts():
    with pytest.raises(CommandError, match="--users"):
        call_command("seed_demo", users=0, posts=5)


def test_if_empty_leaves_a_site_with_posts_alone():
    call_command("seed_demo", users=1, posts=3)
    call_command("seed_demo", users=5, posts=40, if_empty=True)
    assert Post.objects.count() == 3
