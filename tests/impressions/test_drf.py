"""impressions.record() called from Django REST framework views, whose `request` is DRF's Request
wrapping the HttpRequest (in `_request`), with DRF's own authentication: a signed bearer token as
a JWT does (the user is DRF's alone: no session, no cookie) and DRF's SessionAuthentication."""

import inspect
import logging
import re
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.core import signing
from django.http import JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from rest_framework import generics, serializers, viewsets
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.routers import SimpleRouter

import impressions
from casusult.models import Post
from impressions import salt
from impressions.recorder import pending_counts
from tests.factories import make_posts, make_user

pytestmark = pytest.mark.django_db

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
TOKEN_SALT = "tests.impressions.test_drf"


class BearerAuthentication(BaseAuthentication):
    """`Authorization: Bearer <user id, signed>`, as a JWT: DRF's request.user, and the
    HttpRequest's only through DRF."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Bearer "):
            return None
        try:
            user_id = signing.loads(header.removeprefix("Bearer "), salt=TOKEN_SALT)
        except signing.BadSignature:
            raise AuthenticationFailed("bad token") from None
        return get_user_model().objects.get(pk=user_id), None

    def authenticate_header(self, request):
        return "Bearer"


def bearer(user):
    return {"Authorization": f"Bearer {signing.dumps(user.pk, salt=TOKEN_SALT)}"}


class PostSerializer(serializers.ModelSerializer):
    class Meta:
        model = Post
        fields = ["id", "body"]


class TwoAPage(PageNumberPagination):
    page_size = 2


class Api:
    authentication_classes = [BearerAuthentication, SessionAuthentication]
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    serializer_class = PostSerializer
    pagination_class = TwoAPage
    queryset = Post.objects.order_by("id")


class PostList(Api, generics.ListAPIView):
    """docs/impressions/api.md's example: the page served, recorded where DRF cuts it."""

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        impressions.record(self.request, queryset if page is None else page)
        return page


class NoPageSize(PageNumberPagination):
    """A pagination class without page_size (and no REST_FRAMEWORK PAGE_SIZE): DRF serves the
    whole QuerySet and paginate_queryset returns None."""


class UnpagedPostList(PostList):
    pagination_class = NoPageSize


class PostViewSet(Api, viewsets.ReadOnlyModelViewSet):
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        impressions.record(request, page)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


def site_page(request):
    """A plain Django view of the same first page, as the site's own timeline."""
    posts = list(Post.objects.order_by("id")[:2])
    impressions.record(request, posts)
    return JsonResponse({"ids": [post.id for post in posts]})


router = SimpleRouter()
router.register("viewset/posts", PostViewSet, basename="post")
urlpatterns = [
    path("posts/", PostList.as_view()),
    path("unpaged/posts/", UnpagedPostList.as_view()),
    path("site/", site_page),
    *router.urls,
]


@pytest.fixture
def posts(standalone_buffer):
    salt.forget()  # the buffer was emptied: a salt this process remembers is gone from Redis
    with override_settings(ROOT_URLCONF=__name__):
        yield [post.id for post in make_posts(4)]


def counts(ids):
    return [pending_counts(ids)[post_id] for post_id in ids]


def get(client, url, user_agent=CHROME, address=None, **headers):
    """GET `url` as the browser `user_agent` at `address` (default: the client's, 127.0.0.1)."""
    headers = {"User-Agent": user_agent, **headers}
    if isinstance(client, AsyncClient):  # under ASGI (its REMOTE_ADDR is the scope's client)
        response = async_to_sync(client.get)(url, headers=headers)
    else:
        response = client.get(url, headers=headers, **({"REMOTE_ADDR": address} if address else {}))
    assert response.status_code == 200, response.content
    return response


def anonymous_session(client):
    """The client carries a session without a login (a cart, a language), as a site's visitor."""
    session = SessionStore()
    session["cart"] = [1]
    session.save()
    client.cookies["sessionid"] = session.session_key


@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_a_new_anonymous_api_client_gets_the_visitor_cookie_and_its_reload_counts_once(
    posts, handler
):
    client = Client() if handler == "wsgi" else AsyncClient()
    first = get(client, "/posts/")
    assert [item["id"] for item in first.json()["results"]] == posts[:2]
    assert "visitor" in first.cookies, "no visitor cookie for a new anonymous API client"
    second = get(client, "/posts/")
    assert "visitor" not in second.cookies  # kept, not made again
    assert counts(posts) == [1, 1, 0, 0]  # the served page alone, once


def test_the_reloads_of_an_anonymous_api_client_take_one_new_viewer_of_its_address_budget(
    posts,
):
    with override_settings(IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=2):
        reloading = Client()
        for _ in range(3):
            get(reloading, "/posts/")
        get(Client(), "/posts/", user_agent=FIREFOX)  # another browser at the same address
    assert counts(posts[:2]) == [2, 2]


def test_a_token_user_is_one_viewer_whatever_its_address_and_browser(posts):
    alice, bob = make_user("alice"), make_user("bob")
    client = Client()
    get(client, "/posts/", **bearer(alice))
    response = get(client, "/posts/", user_agent=FIREFOX, address="198.51.100.7", **bearer(alice))
    assert "visitor" not in response.cookies  # a user: no visitor cookie
    assert counts(posts[:2]) == [1, 1]
    get(Client(), "/posts/", **bearer(bob))
    assert counts(posts[:2]) == [2, 2]


def test_a_token_user_with_an_anonymous_session_is_that_user_not_the_session(posts):
    alice = make_user("alice")
    client = Client()
    anonymous_session(client)
    get(client, "/site/")  # the site's page: an anonymous viewer (its session has no login)
    assert counts(posts[:2]) == [1, 1]
    get(client, "/posts/", **bearer(alice))  # the same browser, logged in to the API by token
    assert counts(posts[:2]) == [2, 2], "the token user was counted as the anonymous session"
    get(client, "/posts/", user_agent=FIREFOX, address="198.51.100.7", **bearer(alice))
    assert counts(posts[:2]) == [2, 2]


def test_an_anonymous_session_is_not_the_token_user_that_came_with_it_before(posts):
    alice = make_user("alice")
    client = Client()
    anonymous_session(client)
    get(client, "/posts/", **bearer(alice))
    assert counts(posts[:2]) == [1, 1]
    get(client, "/site/")  # no token now: the session's viewer, anonymous, not alice
    assert counts(posts[:2]) == [2, 2], "the anonymous session was counted as the token user"


def test_a_session_user_is_one_viewer_in_the_api_and_on_the_site(posts):
    client = Client()
    client.force_login(make_user("alice"))
    get(client, "/posts/")
    get(client, "/posts/", user_agent=FIREFOX, address="198.51.100.7")
    get(client, "/site/")
    assert counts(posts[:2]) == [1, 1]


@pytest.mark.parametrize("method", ["head", "options"])
def test_a_head_or_options_request_is_not_counted(posts, method):
    response = getattr(Client(), method)("/posts/", headers={"User-Agent": CHROME})
    assert response.status_code == 200
    assert "visitor" not in response.cookies
    assert counts(posts) == [0, 0, 0, 0]


def test_a_viewset_list_counts_the_page_it_serves(posts):
    client = Client()
    response = get(client, "/viewset/posts/?page=2")
    assert [item["id"] for item in response.json()["results"]] == posts[2:]
    assert "visitor" in response.cookies
    get(client, "/viewset/posts/?page=2")
    assert counts(posts) == [0, 0, 1, 1]


def test_a_frame_of_an_api_page_counts_its_token_user_once_its_response_is_known(posts):
    alice = make_user("alice")
    client = Client()
    anonymous_session(client)
    get(client, "/site/")  # an anonymous viewer
    frame = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}
    with override_settings(X_FRAME_OPTIONS="SAMEORIGIN", SECURE_CSP={}):
        get(client, "/posts/", **frame, **{"Sec-Fetch-Dest": "iframe"}, **bearer(alice))
    assert counts(posts[:2]) == [2, 2]  # alice, not the session's anonymous viewer
    anonymous = Client()
    with override_settings(X_FRAME_OPTIONS="SAMEORIGIN", SECURE_CSP={}):
        response = get(anonymous, "/posts/", FIREFOX, **frame, **{"Sec-Fetch-Dest": "iframe"})
    assert "visitor" in response.cookies
    assert counts(posts[:2]) == [3, 3]


def test_the_docs_example_records_the_page_as_this_module_does():
    """docs/impressions/api.md's paginate_queryset is PostList's, comments aside."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "impressions" / "api.md"
    [documented] = re.findall(r"\n    (def paginate_queryset.*?)```", docs.read_text(), re.S)

    def code(source):
        lines = (re.sub(r"\s+#.*", "", line).rstrip() for line in source.strip().splitlines())
        return [line.strip() for line in lines if line.strip()]

    assert code(documented) == code(inspect.getsource(PostList.paginate_queryset))


def test_a_list_without_a_page_size_counts_the_queryset_it_serves_read_once(
    posts, caplog, django_assert_num_queries
):
    client = Client()
    with caplog.at_level(logging.WARNING, logger="impressions"):
        with django_assert_num_queries(1):  # the posts, read once by record and the serializer
            response = get(client, "/unpaged/posts/")
        get(client, "/unpaged/posts/")
    assert [item["id"] for item in response.json()] == posts  # a list: no page
    assert not caplog.records, caplog.text
    assert counts(posts) == [1, 1, 1, 1]
