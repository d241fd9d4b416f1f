"""SQSBackend and SQSWorker without a server: OPTIONS, queue name, client timeouts, stop signals."""

import datetime
import signal
import sys
import time
import uuid
from types import SimpleNamespace

import pytest
from botocore.stub import Stubber
from django.tasks import task_backends
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from queues.exceptions import QueueConfigurationError
from queues.sqs.backend import SQSBackend, region_from_queue_url
from queues.sqs.worker import SQSWorker
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import SQS_BACKEND

URL = "https://sqs.ap-northeast-1.amazonaws.com/123456789012/casusult-jobs"


@pytest.mark.parametrize(
    ("options", "check_id", "named"),
    [
        ({"QUEUE_URL": URL, "WAIT": 1}, "queues.E004", "WAIT"),
        ({}, "queues.E005", "names no queue"),
        ({"QUEUE_URL": URL, "WAIT_TIME_SECONDS": 21}, "queues.E005", "WAIT_TIME_SECONDS=21"),
        ({"QUEUE_URL": URL, "JOB_TIMEOUT": 0}, "queues.E005", "JOB_TIMEOUT=0"),
        # SQS hides a message 12 h from its receive: a task that long would run twice.
        ({"QUEUE_URL": URL, "JOB_TIMEOUT": 43021}, "queues.E005", "JOB_TIMEOUT=43021"),
        ({"QUEUE_URL": URL, "VISIBILITY_TIMEOUT": 43201}, "queues.E005", "VISIBILITY_TIMEOUT"),
        ({"QUEUE_URL": URL, "MAX_MESSAGES": 11}, "queues.E005", "MAX_MESSAGES=11"),
        ({"QUEUE_NAME": "jobs.fifo"}, "queues.E005", "QUEUE_NAME='jobs.fifo' is a FIFO queue"),
        ({"QUEUE_URL": f"{URL}.fifo"}, "queues.E005", "DelaySeconds"),
        (
            {"QUEUE_URL": URL, "CLIENT_PARAMS": {"region_name": "us-east-1"}},
            "queues.E005",
            "CLIENT_PARAMS['region_name']='us-east-1', but QUEUE_URL is a queue in ap-northeast-1",
        ),
    ],
)
def test_bad_options_name_the_alias(settings, options, check_id, named):
    settings.TASKS = {"jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": options}}
    [error] = task_backends["jobs"].check()
    assert error.id == check_id
    assert error.msg.startswith("TASKS['jobs']['OPTIONS']")
    assert named in error.msg
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['jobs'\]"):
        queue_tasks.record_marker.using(backend="jobs").enqueue("never")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("QUEUE_URL", "notaurl"),
        ("QUEUE_URL", "casusult-jobs"),  # a name, in the URL's place
        ("QUEUE_URL", "sqs.eu-west-1.amazonaws.com/123456789012/q"),  # no scheme
        ("QUEUE_URL", "arn:aws:sqs:eu-west-1:123456789012:q"),
        ("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123/q"),  # not an account
        ("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/q"),
        ("QUEUE_URL", "https://eu-west-1.queue.amazonaws.com/123456789012/"),
        ("QUEUE_URL", "http://127.0.0.1:4566/"),
        ("QUEUE_URL", "http://[::1"),
        ("QUEUE_URL", ""),
        ("QUEUE_NAME", URL),
        ("QUEUE_NAME", "casusult jobs"),
        ("QUEUE_NAME", "q" * 81),
    ],
)
def test_a_queue_that_is_no_url_or_name_is_refused_at_every_command(settings, key, value):
    """Found before by `check --deploy` (a warning) or the worker only, far from the setting;
    boto3 takes any string as a QueueUrl."""
    settings.TASKS = {"jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": {key: value}}}
    errors = [e for e in task_backends["jobs"].check() if e.msg.endswith("is not valid.")]
    assert [(e.id, e.msg) for e in errors] == [
        ("queues.E005", f"TASKS['jobs']['OPTIONS']: {key}={value!r} is not valid.")
    ]
    expected = (
        "https://sqs.<region>.amazonaws.com/<account>/<name>"
        if key == "QUEUE_URL"
        else "1 to 80 letters"
    )
    assert expected in errors[0].hint
    with pytest.raises(QueueConfigurationError, match=rf"TASKS\['jobs'\].*{key}"):
        queue_tasks.record_marker.using(backend="jobs").enqueue("never")


@pytest.mark.parametrize(
    "url",
    [
        URL,
        f"{URL}/",
        "https://sqs.us-east-1.amazonaws.com/123456789012/q_1-a",
        "https://queue.amazonaws.com/123456789012/q",
        "https://eu-west-1.queue.amazonaws.com/123456789012/q",
        "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
        "https://vpce-0a1b-c2d3.sqs.ap-southeast-2.vpce.amazonaws.com/123456789012/q",
        "http://127.0.0.1:4566/000000000000/q",  # moto, LocalStack
        "http://[::1]:9324/queue/q",  # ElasticMQ's older form
        "http://localhost:4566/queue/us-east-1/000000000000/q",  # LocalStack's path strategy
    ],
)
def test_every_form_of_queue_url_sqs_answers_is_taken(settings, url):
    settings.TASKS = {"jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": url}}}
    assert task_backends["jobs"].check() == []


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"QUEUE_NAME": "casusult-jobs"}, "casusult-jobs"),
        ({"QUEUE_URL": URL}, "casusult-jobs"),
        ({"QUEUE_URL": f"{URL}/"}, "casusult-jobs"),
        ({"QUEUE_URL": URL, "QUEUE_NAME": "other"}, "other"),
    ],
)
def test_queue_name_comes_from_the_name_or_the_url(options, name):
    assert SQSBackend("default", {"OPTIONS": options}).queue_name == name


@pytest.mark.parametrize(
    ("url", "region"),
    [
        (URL, "ap-northeast-1"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
        ("https://eu-west-1.queue.amazonaws.com/123456789012/q", "eu-west-1"),
        ("https://queue.amazonaws.com/123456789012/q", "us-east-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
        ("https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/q", "us-gov-west-1"),
        ("https://vpce-0a1b-c2d3.sqs.ap-southeast-2.vpce.amazonaws.com/1/q", "ap-southeast-2"),
        ("http://127.0.0.1:4566/000000000000/q", None),  # a local server: the client's region
        ("https://sqs.eu-west-1.amazonaws.com.example.org/1/q", None),
    ],
)
def test_the_region_comes_from_the_queue_url(url, region):
    assert region_from_queue_url(url) == region


def test_the_client_is_in_the_queue_urls_region_not_the_default_one(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    backend = SQSBackend("default", {"OPTIONS": {"QUEUE_URL": URL}})
    assert backend.client.meta.region_name == "ap-northeast-1"
    assert backend.poll_client.meta.region_name == "ap-northeast-1"
    named = SQSBackend("default", {"OPTIONS": {"QUEUE_NAME": "casusult-jobs"}})
    assert named.client.meta.region_name == "us-east-1"


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        # boto3 sends every call to its own endpoint, whatever host QueueUrl names: a queue behind
        # a VPC endpoint (without private DNS) or on a local server was out of its reach.
        (
            "https://vpce-0a1b-c2d3.sqs.ap-southeast-2.vpce.amazonaws.com/123456789012/q",
            "https://vpce-0a1b-c2d3.sqs.ap-southeast-2.vpce.amazonaws.com",
        ),
        ("http://localhost:4566/000000000000/q", "http://localhost:4566"),
        ("http://[::1]:9324/queue/q", "http://[::1]:9324"),
        (
            "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
            "https://sqs.eu-west-1.amazonaws.com",
        ),
        ("https://queue.amazonaws.com/123456789012/q", "https://sqs.us-east-1.amazonaws.com"),
        (
            "https://SQS.EU-WEST-1.AMAZONAWS.COM./123456789012/q",
            "https://sqs.eu-west-1.amazonaws.com",
        ),
    ],
)
def test_the_client_reaches_the_queue_urls_own_endpoint(monkeypatch, url, endpoint):
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    backend = SQSBackend("default", {"OPTIONS": {"QUEUE_URL": url}})
    assert backend.client.meta.endpoint_url == endpoint


def test_an_endpoint_configured_for_the_client_wins_over_the_queue_urls(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"QUEUE_URL": "http://localhost:4566/000000000000/q"}
    backend = SQSBackend("default", {"OPTIONS": options})
    assert backend.client.meta.endpoint_url == "http://127.0.0.1:9"
    # Configured in CLIENT_PARAMS, even as AWS's public endpoint: that one, never a second
    # endpoint_url= (a TypeError building the client).
    public = "https://sqs.us-east-1.amazonaws.com"
    options = {**options, "CLIENT_PARAMS": {"endpoint_url": public}}
    backend = SQSBackend("default", {"OPTIONS": options})
    assert backend.client.meta.endpoint_url == public


def test_the_queue_option_is_refused_naming_the_alias():
    backend = SQSBackend("jobs", {"OPTIONS": {"QUEUE_URL": URL}})
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['jobs'\].*--queue"):
        SQSWorker(backend, queues=["other"])


def test_sqs_clients_have_bounded_timeouts():
    backend = SQSBackend(
        "default", {"OPTIONS": {"QUEUE_URL": URL, "CLIENT_PARAMS": {"region_name": "us-east-1"}}}
    )
    short, poll = backend.client.meta.config, backend.poll_client.meta.config
    assert short.connect_timeout <= 1
    assert short.read_timeout <= 3
    assert poll.read_timeout > backend.options["WAIT_TIME_SECONDS"]


def test_a_stop_signal_arriving_twice_at_once_is_one_stop(monkeypatch):
    worker = SQSWorker(SimpleNamespace(options={}))
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    worker.request_stop(signal.SIGTERM, None)  # from the process group
    clock[0] += 0.01
    worker.request_stop(signal.SIGTERM, None)  # the --concurrency parent's forward: no force exit
    assert worker.stop_requested
    clock[0] += 2
    with pytest.raises(SystemExit) as exit_info:  # a real second request: exit now
        worker.request_stop(signal.SIGINT, None)
    assert exit_info.value.code == 1


def test_ping_asks_for_a_queue_of_another_account_in_that_account(monkeypatch):
    """GetQueueUrl looks in the caller's account unless told: a queue shared from another
    account (its URL's) would fail the worker's /readyz for ever."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    backend = SQSBackend("default", {"OPTIONS": {"QUEUE_URL": URL}})
    with Stubber(backend.client) as stub:
        expected = {"QueueName": "casusult-jobs", "QueueOwnerAWSAccountId": "123456789012"}
        stub.add_response("get_queue_url", {"QueueUrl": URL}, expected)
        backend.ping()
        stub.assert_no_pending_responses()
    named = SQSBackend("default", {"OPTIONS": {"QUEUE_NAME": "casusult-jobs"}})
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with Stubber(named.client) as stub:
        stub.add_response("get_queue_url", {"QueueUrl": URL}, {"QueueName": "casusult-jobs"})
        named.ping()


def test_messages_answered_as_a_stop_arrives_are_handed_back_not_abandoned(monkeypatch):
    """The long poll answers just after a look at it found it running, and a stop arrives in
    between: its messages are taken (the worker then releases them at once), not left to the
    abandoned thread, hidden from every worker until their visibility timeout."""
    from queues.sqs import worker as worker_module

    message = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}"}
    client = SimpleNamespace(receive_message=lambda **_: {"Messages": [message]})
    backend = SimpleNamespace(
        options={"MAX_MESSAGES": 10, "WAIT_TIME_SECONDS": 20}, queue_url=URL, poll_client=client
    )
    worker = SQSWorker(backend)

    class AnswerAfterTheLook(worker_module.Poll):
        def __init__(self, receive):
            super().__init__(receive)
            done = self.done

            class Late(type(done)):
                looks = 0

                def wait(self, timeout=None):
                    assert done.wait(5)
                    Late.looks += 1
                    if Late.looks > 1:
                        return True
                    worker.stop()  # the first look saw it running; the stop came next
                    return False

            self.done = Late()
            self.done.set = done.set
            self.done.is_set = done.is_set

    monkeypatch.setattr(worker_module, "Poll", AnswerAfterTheLook)
    assert worker.receive() == [message]


def test_an_error_report_of_a_failed_client_build_shows_no_aws_secret(monkeypatch):
    # The shared clients' key is built from the AWS_* variables: kept in a local of the frame a
    # failed build raises through, the secret was printed by Django's debug page (and by an error
    # tracker's local variables), which hides AWS_SECRET_ACCESS_KEY everywhere else.
    secret = uuid.uuid4().hex  # not in this file's source, which the report quotes
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    typo = {"region_name": "ap-northeast-1 "}  # a trailing space: botocore refuses the region
    backend = SQSBackend("default", {"OPTIONS": {"QUEUE_URL": URL, "CLIENT_PARAMS": typo}})
    report = build_error_report(backend)
    assert "InvalidRegionError" in report
    assert secret not in report


def build_error_report(backend):
    """Django's debug page of the error building `backend`'s client raises."""
    try:
        backend.client  # noqa: B018 (the property builds it)
    except Exception:
        return ExceptionReporter(RequestFactory().get("/"), *sys.exc_info()).get_traceback_html()
    pytest.fail("the client was built")


def test_a_deferred_task_in_a_repeated_hour_is_due_by_the_real_time(settings, monkeypatch):
    """USE_TZ = False in New York, at 01:58 EDT on 1 November 2026: a task deferred to 01:03 EST
    (fold 1, 5 minutes later) is not due yet, though its wall clock reads earlier; one deferred to
    01:50 EDT is."""
    from django.utils import timezone

    settings.USE_TZ, settings.TIME_ZONE = False, "America/New_York"
    monkeypatch.setattr(timezone, "now", lambda: datetime.datetime(2026, 11, 1, 1, 58))
    worker = SQSWorker(SimpleNamespace(options={}, queue_url=URL))
    worker.deferred = {"later": datetime.datetime(2026, 11, 1, 1, 3, fold=1)}
    assert not worker.deferred_task_due()
    worker.deferred["earlier"] = datetime.datetime(2026, 11, 1, 1, 50)
    assert worker.deferred_task_due()


@pytest.mark.parametrize(
    "tail", ["?X-Amz-Signature=s3cret-Pa55", "?password=s3cret-Pa55", "#fragment"]
)
def test_a_queue_url_with_a_query_or_fragment_is_refused_without_printing_it(settings, tail):
    """No SQS queue URL has one; taken, it became part of the queue's name, which the deploy
    checks, the dashboard and the public /metrics (its queue label) print."""
    settings.TASKS = {"jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": URL + tail}}}
    [error] = task_backends["jobs"].check()
    assert error.id == "queues.E005"
    assert error.msg.startswith("TASKS['jobs']['OPTIONS']: QUEUE_URL=")
    assert "s3cret-Pa55" not in error.msg
