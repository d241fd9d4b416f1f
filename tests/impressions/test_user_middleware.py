"""A project's own middleware that sets `request.user` (a bearer token read by plain Django, a
remote-user header, an API key) beside the session cookie the same browser sends: the viewer is
that user, not the session's, and the session's later anonymous requests are not that user (the
user id remembered per session key is Django's AuthenticationMiddleware's alone)."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.http import JsonResponse
from django.test import Client, override_settings
from django.urls import path
from django.utils.functional import SimpleLazyObject

import impressions
from casusult.models import Post
from impressions import salt
from impressions.recorder import pending_counts
from tests.factories import make_posts, make_user

pytestmark = pytest.mark.django_db


class ApiKeyUserMiddleware:
    """`X-Api-User: <username>` makes that user the request's, lazily or at once."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.headers.get("X-Api-User")
        if name:
            find = lambda: get_user_model().objects.get(username=name)  # noqa: E731
            request.user = SimpleLazyObject(find) if request.headers.get("X-Lazy") else find()
        return self.get_response(request)


def page(request):
    posts = list(Post.objects.order_by("id")[:2])
    impressions.record(request, posts)
    return JsonResponse({"ids": [post.id for post in posts]})


urlpatterns = [path("page/", page)]


@pytest.fixture
def ids(standalone_buffer):
    salt.forget()  # the buffer was emptied: a salt this process remembers is gone from Redis
    auth = settings.MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware")
    middleware = [*settings.MIDDLEWARE]
    middleware.insert(auth + 1, f"{__name__}.ApiKeyUserMiddleware")
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=middleware):
        yield [post.id for post in make_posts(2)]


def anonymous_session_client():
    session = SessionStore()
    session["cart"] = [1]
    session.save()
    client = Client()
    client.cookies["sessionid"] = session.session_key
    return client


def counted(ids):
    return [pending_counts(ids)[post_id] for post_id in ids]


@pytest.mark.parametrize("lazy", ["", "1"])
def test_a_user_another_middleware_sets_is_the_viewer_not_the_session(ids, lazy):
    make_user("alice")
    client = anonymous_session_client()
    client.get("/page/")  # the session's anonymous viewer
    assert counted(ids) == [1, 1]
    client.get("/page/", headers={"X-Api-User": "alice", "X-Lazy": lazy})
    assert counted(ids) == [2, 2], "alice was counted as the session's anonymous viewer"
    client.get("/page/", headers={"X-Api-User": "alice", "X-Lazy": lazy, "User-Agent": "Other"})
    assert counted(ids) == [2, 2]  # alice again: de-duplicated as a user


@pytest.mark.parametrize("lazy", ["", "1"])
def test_the_session_is_not_the_user_another_middleware_set_before(ids, lazy):
    make_user("alice")
    client = anonymous_session_client()
    client.get("/page/", headers={"X-Api-User": "alice", "X-Lazy": lazy})
    assert counted(ids) == [1, 1]
    client.get("/page/")
    assert counted(ids) == [2, 2], "the anonymous session was counted as alice"


def test_a_session_user_is_still_remembered(ids, django_assert_max_num_queries):
    client = Client()
    client.force_login(make_user("bob"))
    client.get("/page/")
    with django_assert_max_num_queries(2):  # the posts; the session and user are not read again
        client.get("/page/")
    assert counted(ids) == [1, 1]
