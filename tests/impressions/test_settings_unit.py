"""Impressions settings and system checks, without services: values, the counted model, flags."""

import argparse

import pytest
from django.conf import settings
from django.core.checks import Tags, run_checks
from django.test import override_settings

from impressions import conf
from impressions.checks import check_counted_model, check_flush_can_be_deferred, check_settings
from impressions.management.commands.flush_impressions import batch_size
from tests.queues.rq.support import rq_settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMPRESSIONS_DEDUP_WINDOW", "300"),
        ("IMPRESSIONS_FLUSH_BATCH_SIZE", 0),
        ("IMPRESSIONS_REDIS_TIMEOUT", 0),
        ("IMPRESSIONS_COUNT_ANONYMOUS", "yes"),
        ("IMPRESSIONS_SHARDS", 2000),
        ("IMPRESSIONS_DEDUP_WINDOW", 10**20),
        ("IMPRESSIONS_FLUSH_REDIS_TIMEOUT", float("inf")),
        ("IMPRESSIONS_FLUSH_LOCK_TIMEOUT", 0),
        ("IMPRESSIONS_FLUSH_LOCK_TIMEOUT", "60s"),
        ("IMPRESSIONS_LEDGER_RETENTION_DAYS", 10**10),
        ("IMPRESSIONS_HISTORY_DAYS", -1),
        ("IMPRESSIONS_HISTORY_DAYS", "400"),
        ("IMPRESSIONS_HISTORY_DAYS", True),
        ("IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR", -1),
        ("IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR", "2000"),
        ("IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR", None),
        ("IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR", 10**10),
        ("IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR", 2.5),
        ("IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR", False),
        ("IMPRESSIONS_ROLLUP_BATCH_SECONDS", -0.05),
        ("IMPRESSIONS_ROLLUP_BATCH_SECONDS", "0.05"),
        ("IMPRESSIONS_ROLLUP_BATCH_SECONDS", float("nan")),
        ("IMPRESSIONS_ROLLUP_BATCH_SECONDS", 3601),
        ("IMPRESSIONS_ROLLUP_PACE", -1),
        ("IMPRESSIONS_ROLLUP_PACE", 101),
        ("IMPRESSIONS_ROLLUP_PACE", True),
        ("IMPRESSIONS_ROLLUP_PACE", float("inf")),
        ("IMPRESSIONS_ROLLUP_PACE", None),
    ],
)
def test_a_bad_value_is_an_error_naming_the_setting(name, value):
    with override_settings(**{name: value}):
        errors = [error for error in run_checks() if error.id == "impressions.E005"]
    assert [(error.obj, error.msg) for error in errors] == [
        (name, f"{name}={value!r} is not valid.")
    ]
    assert errors[0].hint.startswith("Use ")


def test_every_bad_setting_is_reported_in_one_check_run():
    bad = {
        "IMPRESSIONS_REDIS_URL": "localhost:6379",
        "IMPRESSIONS_FLUSH_BATCH_SIZE": 0,
        "IMPRESSIONS_SHARDS": 0,
        "IMPRESSIONS_KEY_PREFIX": "{imp}",
        "IMPRESSIONS_VISITOR_COOKIE_NAME": "a b",
        "IMPRESSIONS_IGNORE_USER_AGENTS": "bot((",
    }
    with override_settings(**bad):
        named = {error.obj for error in check_settings()}
        ids = {error.id for error in run_checks() if error.obj in bad}
    assert named == set(bad)
    assert ids == {"impressions.E005"}


def test_the_defaults_pass():
    assert check_settings() == []


@pytest.mark.parametrize(
    "values",
    [
        # Fixed batches, no rest: the roll-up as fast as it goes.
        {"IMPRESSIONS_ROLLUP_BATCH_SECONDS": 0, "IMPRESSIONS_ROLLUP_PACE": 0},
        {"IMPRESSIONS_ROLLUP_BATCH_SECONDS": 0.5, "IMPRESSIONS_ROLLUP_PACE": 2},
        {"IMPRESSIONS_ROLLUP_BATCH_SECONDS": 1, "IMPRESSIONS_ROLLUP_PACE": 100},
    ],
)
def test_the_roll_up_s_pacing_accepts_its_range(values):
    with override_settings(**values):
        assert check_settings() == []
        read = {
            "IMPRESSIONS_ROLLUP_BATCH_SECONDS": conf.conf.ROLLUP_BATCH_SECONDS,
            "IMPRESSIONS_ROLLUP_PACE": conf.conf.ROLLUP_PACE,
        }
        assert read == values


def test_lazy_settings_follow_override_settings():
    with override_settings(IMPRESSIONS_FLUSH_DELAY=7):
        assert conf.conf.FLUSH_DELAY == 7
        assert conf.conf.GUARD_TTL == 7 + conf.GUARD_GRACE_SECONDS
    assert conf.conf.FLUSH_DELAY == 300


def test_deploy_check_warns_when_the_flush_cannot_be_deferred():
    immediate = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    dummy = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    with override_settings(TASKS=immediate):
        ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert "impressions.W001" in ids
    with override_settings(TASKS=dummy):
        ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert "impressions.W001" not in ids
    assert "impressions.W002" in ids  # stored, never run: nothing would flush
    with override_settings(**rq_settings(settings.RQ_REDIS_URL)):
        assert check_flush_can_be_deferred() == []


def test_deploy_check_warns_when_a_proxy_in_front_is_not_trusted():
    def deploy_ids(**overrides):
        with override_settings(**overrides):
            return {message.id for message in run_checks(include_deployment_checks=True)}

    proxied = {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")}
    assert "impressions.W004" in deploy_ids(**proxied)
    assert "impressions.W004" not in deploy_ids(**proxied, IMPRESSIONS_TRUSTED_PROXIES=1)
    assert "impressions.W004" not in deploy_ids(**proxied, IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=0)
    assert "impressions.W004" not in deploy_ids(SECURE_PROXY_SSL_HEADER=None)


def counted_model_check_ids():
    """The impressions.E00x ids that Django's own check run reports (the check is registered)."""
    return {
        message.id
        for message in run_checks(tags=[Tags.models])
        if message.id.startswith("impressions.")
    }


@pytest.mark.parametrize(
    ("model", "field"),
    [("casusult.Post", "impressions"), ("countedapp.Article", "views")],
)
def test_an_integer_field_of_an_installed_model_passes(model, field):
    with override_settings(IMPRESSIONS_MODEL=model, IMPRESSIONS_COUNT_FIELD=field):
        assert counted_model_check_ids() == set()


def test_a_missing_model_setting_is_e001():
    with override_settings():
        del settings.IMPRESSIONS_MODEL
        [error] = check_counted_model()
    assert error.id == "impressions.E001"
    assert error.msg == "IMPRESSIONS_MODEL is not set (it is required)."
    assert "IMPRESSIONS_MODEL" in error.hint


@pytest.mark.parametrize(
    "model",
    ["Post", "casusult.Post.extra", "casusult.", "blog.Post", "casusult.Nope", 42, ""],
)
def test_a_model_that_is_malformed_or_not_installed_is_e001(model):
    with override_settings(IMPRESSIONS_MODEL=model):
        assert counted_model_check_ids() == {"impressions.E001"}
        [error] = check_counted_model()
    assert repr(model) in error.msg
    assert "app_label.ModelName" in error.hint


@pytest.mark.parametrize(
    ("model", "field"),
    [("casusult.Post", "views"), ("countedapp.Article", "impressions"), ("casusult.Post", None)],
)
def test_a_field_the_model_lacks_is_e002(model, field):
    with override_settings(IMPRESSIONS_MODEL=model, IMPRESSIONS_COUNT_FIELD=field):
        assert counted_model_check_ids() == {"impressions.E002"}
        [error] = check_counted_model()
    assert "IMPRESSIONS_COUNT_FIELD" in error.hint


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("countedapp.Article", "title"),  # CharField
        ("countedapp.Article", "rating"),  # FloatField
        ("countedapp.Sensor", "total"),  # DecimalField, even without decimal places
        ("countedapp.Article", "id"),  # an integer, but the primary key
        ("casusult.Post", "author"),  # a foreign key
        ("casusult.Post", "created_at"),
    ],
)
def test_a_field_that_cannot_hold_a_count_is_e003(model, field):
    with override_settings(IMPRESSIONS_MODEL=model, IMPRESSIONS_COUNT_FIELD=field):
        assert counted_model_check_ids() == {"impressions.E003"}
        [error] = check_counted_model()
    assert "PositiveBigIntegerField" in error.hint


def test_a_count_field_narrower_than_64_bits_is_w008():
    with override_settings(
        IMPRESSIONS_MODEL="countedapp.Article", IMPRESSIONS_COUNT_FIELD="shares"
    ):
        assert counted_model_check_ids() == {"impressions.W008"}
        [warning] = check_counted_model()
    assert "at most 2,147,483,647" in warning.msg
    assert "PositiveBigIntegerField" in warning.hint
    with override_settings(IMPRESSIONS_MODEL="countedapp.Article", IMPRESSIONS_COUNT_FIELD="views"):
        assert counted_model_check_ids() == set()


def test_a_multi_table_child_is_counted_by_its_parent_s_integer_id():
    with override_settings(IMPRESSIONS_MODEL="countedapp.Story", IMPRESSIONS_COUNT_FIELD="reads"):
        assert counted_model_check_ids() == set()


def test_a_multi_table_grandchild_is_counted_by_its_ancestor_s_integer_id():
    field = "featured_reads"
    with override_settings(IMPRESSIONS_MODEL="countedapp.Feature", IMPRESSIONS_COUNT_FIELD=field):
        assert counted_model_check_ids() == set()


def test_a_count_field_in_the_parent_s_table_is_e010():
    field = "listed_views"
    with override_settings(IMPRESSIONS_MODEL="countedapp.Story", IMPRESSIONS_COUNT_FIELD=field):
        assert counted_model_check_ids() == {"impressions.E010"}
        [error] = check_counted_model()
    assert "countedapp.Listing" in error.msg and "'countedapp.Listing'" in error.hint


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("countedapp.Tag", "SlugField"),
        ("countedapp.Voucher", "UUIDField"),
        ("countedapp.Placement", "CompositePrimaryKey"),
    ],
)
def test_a_model_without_an_integer_primary_key_is_e004(model, key):
    """The history keeps ids as bigints: refused at start-up, not at the first record or flush."""
    with override_settings(IMPRESSIONS_MODEL=model, IMPRESSIONS_COUNT_FIELD="uses"):
        assert counted_model_check_ids() == {"impressions.E004"}
        [error] = check_counted_model()
    assert error.msg == (
        f"IMPRESSIONS_MODEL={model!r} has a {key} primary key; impressions are counted by"
        " integer ids."
    )


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("countedapp.Entry", "hits"),  # a key not named id, managers that hide rows
        ("countedapp.Badge", "shown"),  # SmallAutoField key, a db_default count
        ("countedapp.Sensor", "reads"),  # IntegerField key
        ("countedapp.FeaturedArticle", "views"),  # a proxy
        ("countedapp.SchemaPost", "seen"),  # unmanaged, in another schema
        ("countedapp.ArticleView", "views"),  # a view (E012 asks the database)
    ],
)
def test_the_shapes_the_flush_counts_pass(model, field):
    with override_settings(IMPRESSIONS_MODEL=model, IMPRESSIONS_COUNT_FIELD=field):
        assert counted_model_check_ids() == set()


class SecondDatabaseRouter:
    """Sends one app's writes to a second database (reads follow the default routing)."""

    app_label = ""

    def db_for_write(self, model, **hints):
        return "second" if model._meta.app_label == self.app_label else None


class CountedAppRouter(SecondDatabaseRouter):
    app_label = "countedapp"


class ImpressionsRouter(SecondDatabaseRouter):
    app_label = "impressions"


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        return "replica"


@pytest.mark.parametrize(
    ("router", "named"),
    [("CountedAppRouter", "countedapp.Article"), ("ImpressionsRouter", "impressions.Flush")],
)
def test_writes_routed_to_another_database_are_e009(router, named):
    """The flush writes the counts and the history in one transaction on 'default': a router
    sending either elsewhere would fail every flush ("no such table"), so start-up refuses it."""
    routers = [f"{__name__}.{router}"]
    with override_settings(
        IMPRESSIONS_MODEL="countedapp.Article",
        IMPRESSIONS_COUNT_FIELD="views",
        DATABASE_ROUTERS=routers,
    ):
        assert counted_model_check_ids() == {"impressions.E009"}
        [error] = [m for m in run_checks(tags=[Tags.models]) if m.id == "impressions.E009"]
    assert error.obj == "DATABASE_ROUTERS"
    assert named in error.msg and "'second'" in error.msg
    assert "'default'" in error.hint


def test_reads_from_a_replica_are_no_error():
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.ReplicaRouter"]):
        assert counted_model_check_ids() == set()


REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


def redis_cache(location):
    return {"BACKEND": REDIS_CACHE, "LOCATION": location}


@pytest.mark.parametrize(
    ("buffer", "cache", "warned"),
    [
        ("redis://127.0.0.1:6379/0", redis_cache("redis://127.0.0.1:6379"), True),
        ("redis://localhost/3", redis_cache(["redis://127.0.0.1:6379/3"]), True),
        ("redis://cache:6379/1", redis_cache("redis://cache/1"), True),
        ("unix:///run/redis.sock?db=2", redis_cache("unix:///run/redis.sock?db=2"), True),
        # Django's RedisCache hands OPTIONS to the pool: its db, where LOCATION names none.
        (
            "redis://127.0.0.1:6379/3",
            {**redis_cache("redis://127.0.0.1:6379"), "OPTIONS": {"db": 3}},
            True,
        ),
        (
            "redis://127.0.0.1:6379/3",
            {**redis_cache("redis://127.0.0.1:6379/3"), "OPTIONS": {"db": 5}},  # the URL's wins
            True,
        ),
        (
            "redis://127.0.0.1:6379/0",
            {**redis_cache("redis://127.0.0.1:6379"), "OPTIONS": {"db": 5}},
            False,
        ),
        ("redis://127.0.0.1:6379/0", redis_cache("redis://127.0.0.1:6379/1"), False),
        ("redis://127.0.0.1:6379/0", redis_cache("redis://10.0.0.9:6379/0"), False),
        (
            "redis://127.0.0.1:6379/0",
            {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            False,
        ),
    ],
)
def test_a_redis_cache_on_the_buffer_s_database_is_w006(buffer, cache, warned):
    """cache.clear() runs FLUSHDB: on the buffer's database it deletes every pending count."""
    with override_settings(IMPRESSIONS_REDIS_URL=buffer, CACHES={"default": cache}):
        found = [m for m in run_checks(tags=[Tags.caches]) if m.id.startswith("impressions.")]
    assert [m.id for m in found] == (["impressions.W006"] if warned else [])
    if warned:
        assert "CACHES['default']" in found[0].msg and "FLUSHDB" in found[0].msg
        assert found[0].obj == "IMPRESSIONS_REDIS_URL"


@pytest.mark.parametrize("text", ["0", "-1", "1000001", "2.5", "many", "", "²"])
def test_a_bad_batch_size_flag_is_a_usage_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="whole number from 1 to 1000000"):
        batch_size(text)


@pytest.mark.parametrize(
    ("text", "size"), [("1", 1), ("5000", 5000), (" 7 ", 7), ("1000000", 10**6)]
)
def test_a_good_batch_size_flag_is_taken(text, size):
    assert batch_size(text) == size


def test_messages_and_labels_name_the_counted_model_not_posts():
    from impressions.admin import FlushAdmin
    from impressions.flush import FlushReport

    report = FlushReport(flush_id="f", impressions_applied=5, posts_updated=3, posts_dropped=1)
    report.impressions_dropped = 2
    with override_settings(IMPRESSIONS_MODEL="countedapp.Article"):
        assert "5 impressions applied to 3 articles" in str(report)
        assert "2 dropped for 1 deleted articles" in str(report)
        assert str(FlushAdmin.updated.short_description) == "articles updated"
    with override_settings(IMPRESSIONS_MODEL=None):  # unset: the checks report it
        assert "applied to 3 objects" in str(report)
    assert "applied to 3 posts" in str(report)  # the demo site's casusult.Post


def test_a_misspelled_setting_is_a_warning_naming_the_one_meant():
    with override_settings(
        IMPRESSIONS_SHARD=3, IMPRESSIONS_NOTHING_LIKE_IT=1, IMPRESSION_FLUSH_DELAY=60
    ):
        found = [m for m in check_settings() if m.id == "impressions.W005"]
    assert [(m.obj, m.hint) for m in found] == [
        ("IMPRESSIONS_NOTHING_LIKE_IT", "See docs/impressions/settings.md."),
        ("IMPRESSIONS_SHARD", "Did you mean IMPRESSIONS_SHARDS?"),
        ("IMPRESSION_FLUSH_DELAY", "Did you mean IMPRESSIONS_FLUSH_DELAY?"),
    ]
    assert [m for m in check_settings() if m.id == "impressions.W005"] == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("REDIS://:hunter2@h:6379/0", "is not valid."),  # redis-py reads the scheme as written
        ("redis+unix://:hunter2@/run/redis.sock", "is not valid."),
        ("redis://:hunter2@h:6379/0?ssl_cert_reqs=none", "ssl_cert_reqs= is a TLS option"),
        ("unix://:hunter2@/run/redis.sock?ssl_ca_certs=/ca.pem", "a TLS option, which only"),
        ("rediss://:hunter2@h:6379/0?ssl_cert_reqs=CERT_NONE", "takes none, optional or required"),
        ("redis://:hunter2@h:6379/0?db=x", "Invalid value for 'db'"),
        ("redis://:hunter2@h:6379/0?sockettimeout=1", "takes no connection option 'sockettimeout'"),
        # redis-py lets these win over the app's 50 ms: a hung Redis would hold requests 5 s.
        ("redis://:hunter2@h:6379/0?socket_timeout=5", "socket_timeout= would override"),
        ("redis://:hunter2@h/0?db=1&socket_connect_timeout=5", "set IMPRESSIONS_REDIS_TIMEOUT"),
        # str replies where the app reads bytes: every record and flush failed (a TypeError
        # logged, an AttributeError traceback), the check said nothing.
        ("redis://:hunter2@h:6379/0?decode_responses=True", "decode_responses= would"),
        ("redis://:hunter2@h:6379/0?decode_responses=yes", "decode_responses= would"),
        # redis-py reads a path it cannot parse as database 0: maybe another project's buffer.
        ("redis://:hunter2@h:6379/abc", "no database number"),
        ("redis://:hunter2@h:6379/-1", "no database number"),
        # Shown without it, the URL looked right ("its path is no database number").
        ("redis://:hunter2@h:6379/2 ", "ends with whitespace"),
        ("redis://:hunter2@h:6379/2\n", "ends with whitespace"),
        (" redis://:hunter2@h:6379/2", "begins or ends with whitespace"),
        # A raw / ? # in the password ends the host for redis-py: it took `s3` for the host (and
        # sent it the password's first part), or none (localhost); a raw / was "no database".
        ("redis://:hunter2@s3?cret@h:6379/2", "not percent-encoded"),
        ("redis://:hunter2@s3#cret@h:6379/2", "not percent-encoded"),
        ("redis://:hunter2@s3/cret@h:6379/2", "not percent-encoded"),
        ("redis://:hun?ter2@h:6379/2", "not percent-encoded"),
        ("redis://:hun/ter2@h:6379/2", "not percent-encoded"),
        # A socket's path: redis-py took "hun" for the password and "/ter2@/run/r.sock" for it.
        ("unix://:hun/ter2@/run/redis.sock", "not percent-encoded"),
        ("unix://:hunter2@s3/cret@/run/redis.sock", "not percent-encoded"),
    ],
)
def test_a_buffer_url_redis_py_refuses_is_an_error_that_hides_its_password(url, problem):
    # Each would lose every impression at the first call; the check says why, at start-up.
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        [error] = [error for error in check_settings() if error.obj == "IMPRESSIONS_REDIS_URL"]
    assert error.id == "impressions.E005"
    assert problem in error.msg
    assert "hunter2" not in error.msg
    assert ":***@" in error.msg


# A raw / ? # in the user name (an ACL user's): redis-py connected to the host "s3" (no password).
@pytest.mark.parametrize(
    "url", ["redis://s3?cret:hunter2@h:6379/2", "redis://s3#cret:hunter2@h:6379/2"]
)
def test_a_user_name_holding_a_raw_question_mark_or_hash_is_an_error(url):
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        [error] = [error for error in check_settings() if error.obj == "IMPRESSIONS_REDIS_URL"]
    assert error.id == "impressions.E005"
    assert "not percent-encoded" in error.msg
    assert "hunter2" not in error.msg and "cret" not in error.msg


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/0?cluster=false",  # the app's own flag, never given to redis-py
        "rediss://h:6379?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem&ssl_check_hostname=false",
        "redis://h?db=3&protocol=3&client_name=web&health_check_interval=30",
        "unix:///run/redis.sock?db=2",
        # An @ in a socket's path (a systemd instance's, say): no credentials at all.
        "unix:///run/redis@main.sock?db=2",
        "unix://:p%2Fw@/run/redis@main.sock",
        "redis://h:6379/7/",
        "rediss://:p%40ss%2Fw%3Fo%23rd@h/0?ssl_ca_certs=/etc/ca@2026/ca.pem",
        # No host (localhost), a password, and an @ in a query value: redis-py reads it right.
        "rediss://:pw@/0?ssl_ca_certs=/etc/ca@2026/ca.pem",
        "redis://u%2Fx:p:a:ss@[::1]:6379/0",
    ],
)
def test_buffer_urls_redis_py_takes_pass(url):
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("overrides", "code", "names"),
    [
        ({"IMPRESSIONS_FLUSH_PARTS": 17}, "impressions.E006", "IMPRESSIONS_SHARDS=16"),
        (
            {"IMPRESSIONS_FLUSH_REPLICA_WAIT": 10, "IMPRESSIONS_FLUSH_REDIS_TIMEOUT": 10},
            "impressions.E011",
            "IMPRESSIONS_FLUSH_REDIS_TIMEOUT=10",
        ),
    ],
)
def test_settings_that_contradict_each_other_are_an_error_naming_both(overrides, code, names):
    with override_settings(**overrides):
        [error] = [error for error in check_settings() if error.id == code]
    assert names in error.msg


def test_a_replica_wait_below_the_flush_timeout_passes():
    with override_settings(IMPRESSIONS_FLUSH_REPLICA_WAIT=2, IMPRESSIONS_FLUSH_REDIS_TIMEOUT=3):
        assert check_settings() == []


@pytest.mark.parametrize(
    "value",
    [
        "https://app.example.com",
        ["app.example.com"],
        ["https://app.example.com/path"],
        ["https://app.example.com/"],
        [None],
        # Browsers send an IDN host in punycode (xn--bcher-kva.example): this one would never match.
        ["https://bücher.example"],
        # Sandboxed frames and file:// pages of any site send Origin: null; listing it trusts all.
        ["null"],
        ["https://app.example.com:99999"],
    ],
)
def test_cross_site_origins_must_be_origins(value):
    with override_settings(IMPRESSIONS_CROSS_SITE_ORIGINS=value):
        [error] = [e for e in check_settings() if e.obj == "IMPRESSIONS_CROSS_SITE_ORIGINS"]
    assert error.id == "impressions.E005"


def test_cross_site_origins_take_origins_with_ports_and_any():
    origins = [
        "http://localhost:3000",
        "*",
        "http://[::1]:3000",
        "https://xn--bcher-kva.example",
        "capacitor://localhost",
        "moz-extension://2d2c1d6e-7f5a-4c3b-9d8e-1a2b3c4d5e6f",
    ]
    with override_settings(IMPRESSIONS_CROSS_SITE_ORIGINS=origins):
        assert check_settings() == []


NOT_A_PANEL = "a title"


@pytest.mark.parametrize(
    ("panels", "reason"),
    [
        # A typo was found only when a staff user opened the dashboard ("unavailable").
        (["tests.site.no_such_module.panel"], "ModuleNotFoundError: No module named"),
        (["casusult.dashboard_panels.no_such_panel"], 'does not define a "no_such_panel"'),
        ([f"{__name__}.NOT_A_PANEL"], "is not callable"),
    ],
)
def test_a_dashboard_panel_that_names_no_callable_is_an_error(panels, reason):
    with override_settings(IMPRESSIONS_DASHBOARD_PANELS=panels):
        [error] = [e for e in check_settings() if e.obj == "IMPRESSIONS_DASHBOARD_PANELS"]
    assert error.id == "impressions.E005"
    assert error.msg.startswith(f"IMPRESSIONS_DASHBOARD_PANELS={panels!r} is not valid: ")
    assert f"{panels[0]!r}" in error.msg and reason in error.msg


def test_the_site_s_dashboard_panel_passes():
    with override_settings(IMPRESSIONS_DASHBOARD_PANELS=["casusult.dashboard_panels.queue_panel"]):
        assert [e for e in check_settings() if e.obj == "IMPRESSIONS_DASHBOARD_PANELS"] == []
