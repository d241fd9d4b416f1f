"""The IAM policies docs/operations/aws.md gives, against what the code calls: enough, and no more.

moto authorizes each call by the caller's policies (tests/queues/sqs/iam_moto.py, which writes
down every decision); each role's code paths run under its own user, with the policy the
documentation gives, and the test compares what they were refused and what they used with it.
"""

import io
import json
import re
import subprocess
import sys
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from django.core.management import call_command
from django.tasks import task_backends
from django.test import override_settings
from django.utils import timezone

import devservices
from impressions.recorder import record_impressions
from impressions.redis_client import get_flush_client
from queues.sqs.checks import redrive_warnings
from queues.sqs.setup import setup_queues
from queues.stats import backend_stats
from tests.processes import run_manage
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import SQS_BACKEND, dlq_messages, run_burst

ROOT = Path(__file__).resolve().parents[3]
AWS_DOC = ROOT / "docs" / "operations" / "aws.md"
ACCOUNT, REGION = "123456789012", "us-east-1"


# The KMS key of aws.md's example (AWS's own example key id).
KMS_KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
# A queue's encryption: SQS's own keys (SSE-SQS), or a KMS key (SSE-KMS).
ENCRYPTIONS = {
    "sse-sqs": {"SqsManagedSseEnabled": "true"},
    "sse-kms": {"KmsMasterKeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KMS_KEY}"},
}


def documented_blocks():
    """The JSON blocks of aws.md, in order."""
    text = AWS_DOC.read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def documented_policy(role, name, encryption):
    """aws.md's policy of `role` (0: the web's, 1: the worker's) for queue `name`, with the
    statement it gives for a KMS-encrypted queue's key if `encryption` is SSE-KMS."""
    policies = [block for block in documented_blocks() if "Statement" in block]
    policy = for_queue(policies[role], name)
    if encryption == "sse-kms":
        kms = [block for block in documented_blocks() if "Effect" in block]
        policy["Statement"] += [for_queue(statement, name) for statement in kms]
    return policy


def for_queue(policy, name):
    """`policy` (a documented one, for casusult in eu-west-1) for queue `name` in moto's region."""
    text = json.dumps(policy).replace("eu-west-1", REGION)
    return json.loads(re.sub(r":casusult(-dlq)?\"", lambda m: f':{name}{m.group(1) or ""}"', text))


def granted(policy):
    """{(action, resource)} a policy allows."""
    return {
        (action, resource)
        for statement in policy["Statement"]
        for action in statement["Action"]
        for resource in (
            [statement["Resource"]]
            if isinstance(statement["Resource"], str)
            else statement["Resource"]
        )
    }


class IamMotoProcess(devservices.MotoServerProcess):
    """moto's server authorizing SQS calls as AWS does, writing down each decision."""

    def __init__(self, decisions):
        super().__init__()
        self.decisions = decisions

    def command(self):
        module = "tests.queues.sqs.iam_moto"  # run from the project's root, as pytest is
        return [sys.executable, "-m", module, str(self.port), str(self.decisions)]


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory):
    """The server, an administrator's keys made before it checks any (then it checks all)."""
    decisions = tmp_path_factory.mktemp("iam") / "decisions.jsonl"
    server = IamMotoProcess(decisions).start()
    try:
        everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        admin = make_user(server.url, "admin", {"Version": "2012-10-17", "Statement": [everything]})
        request = urllib.request.Request(
            f"{server.url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=5).close()
        yield SimpleNamespace(url=server.url, decisions=decisions, admin=admin)
    finally:  # also when the set-up fails: no server left behind
        server.stop()


def make_user(url, name, policy, by=("setup", "setup")):
    """An IAM user with `policy` only, made with the keys `by`; its (access key id, secret)."""
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=by[0],
        aws_secret_access_key=by[1],
    )
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture
def as_user(iam_moto, monkeypatch, settings):
    """as_user(policy, queue, **options): TASKS['default'] on `queue` (as_user.queues() makes a
    fresh one with its DLQ) with `options`, this process calling SQS as a new user with `policy`
    only; returns its access key id. as_user.admin() calls as the administrator instead."""
    users = {}

    def become(key):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", users[key])
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", iam_moto.url)
        settings.TASKS = {**settings.TASKS}  # new backends: their clients take the new keys
        return key

    def as_user(policy, queue, **options):
        key, secret = make_user(
            iam_moto.url, f"user-{uuid.uuid4().hex[:8]}", policy, iam_moto.admin
        )
        users[key] = secret
        settings.TASKS = {
            "default": {
                "BACKEND": SQS_BACKEND,
                "OPTIONS": {
                    "QUEUE_URL": queue.url,
                    "WAIT_TIME_SECONDS": 1,
                    "TASK_MODULES": [*settings.TEST_TASK_MODULES, "impressions.tasks"],
                    **options,
                },
            }
        }
        return become(key)

    def admin():
        users[iam_moto.admin[0]] = iam_moto.admin[1]
        become(iam_moto.admin[0])
        # Its own keys: boto3's default session keeps the credentials it found first.
        key, secret = iam_moto.admin
        return boto3.client(
            "sqs",
            endpoint_url=iam_moto.url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def decisions(key):
        lines = iam_moto.decisions.read_text().splitlines()
        return [d for d in map(json.loads, lines) if d["key"] == key]

    def queues(**attributes):
        name = f"iam-{uuid.uuid4().hex[:10]}"
        queue, dlq = setup_queues(admin(), name, max_receive_count=5)
        for url in (queue.url, dlq.url) if attributes else ():
            admin().set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return SimpleNamespace(name=name, url=queue.url, dlq_url=dlq.url)

    def environment(key, queue):
        """The environment of a `runworker` subprocess calling as user `key` on `queue`."""
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": users[key],
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_SQS": iam_moto.url,
                "QUEUE_BACKEND": "sqs", "SQS_QUEUE_URL": queue.url, "SQS_WAIT_TIME_SECONDS": "1"}  # fmt: skip

    as_user.admin, as_user.become, as_user.environment = admin, become, environment
    as_user.decisions, as_user.queues = decisions, queues
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    yield as_user
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)


def refused(decisions):
    return sorted({(d["action"], d["resource"]) for d in decisions if not d["allowed"]})


def used(decisions):
    return {(d["action"], d["resource"]) for d in decisions if d["allowed"]}


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
def test_the_web_policy_allows_what_the_web_calls_and_no_more(as_user, encryption):
    """Enqueueing (the flush a record schedules, delayed), /readyz, /metrics and the admin's
    queue status, and `check --deploy`, under the web role's documented policy."""
    queue = as_user.queues(**ENCRYPTIONS[encryption])
    web = documented_policy(0, queue.name, encryption)
    key = as_user(web, queue)
    prefix = f"iam-{queue.name}"  # a buffer of its own: its first record schedules a flush
    try:
        with override_settings(IMPRESSIONS_KEY_PREFIX=prefix):
            record_impressions("u:1", [1, 2, 3])  # never raises: the queue says what it sent
    finally:
        buffer = get_flush_client()
        buffer.delete(*buffer.keys(f"{{{prefix}*"))
    found = backend_stats("default")  # /metrics, the admin's Queue status
    assert found.error is None
    assert found.queues[0].counts["delayed"] == 1  # the flush, IMPRESSIONS_FLUSH_DELAY away
    task_backends["default"].ping()  # /readyz
    assert redrive_warnings(task_backends["default"]) == []  # check --deploy
    decisions = as_user.decisions(key)
    assert refused(decisions) == []
    assert granted(web) - used(decisions) == set()


def test_the_worker_policy_allows_what_the_worker_calls_and_no_more(as_user):
    """A worker's whole round under its documented policy, on SSE-KMS queues (the SQS actions
    are the same on SSE-SQS ones): a task that succeeds, one retried, one that fails its last
    attempt (to the DLQ), a malformed message (set aside), a far run_after (re-sent), messages
    handed back behind a slow task; its /readyz and /metrics."""
    queue = as_user.queues(**ENCRYPTIONS["sse-kms"])
    worker = documented_policy(1, queue.name, "sse-kms")
    key = as_user(worker, queue, MAX_ATTEMPTS=2, RETRY_DELAY=0, VISIBILITY_TIMEOUT=1)
    admin = as_user.admin()  # the web's part: enqueueing
    queue_tasks.record_marker.enqueue("ok")
    queue_tasks.fail_until.enqueue("retried", succeed_on=2)
    queue_tasks.fail_always.enqueue("dead")
    queue_tasks.sleep_then_mark.enqueue(1.6, "slow-1")
    queue_tasks.sleep_then_mark.enqueue(1.6, "slow-2")
    queue_tasks.record_marker.using(run_after=timezone.now() + timedelta(hours=1)).enqueue("later")
    admin.send_message(QueueUrl=queue.url, MessageBody="not json")
    as_user.become(key)
    assert run_burst(long_poll=True) == 0
    assert {"ok", "slow-1", "slow-2", "failed:dead"} <= set(queue_tasks.markers())
    assert [attempt for attempt, _ in queue_tasks.attempts_of("retried")] == [1, 2]
    dead = dlq_messages(SimpleNamespace(client=admin, dlq_url=queue.dlq_url))
    assert len(dead) == 2  # the malformed message, the last attempt
    assert backend_stats("default").error is None  # the health port's /metrics
    task_backends["default"].ping()  # its /readyz
    decisions = as_user.decisions(key)
    assert refused(decisions) == []
    assert granted(worker) - used(decisions) == set()


# The roles aws.md gives in prose, by queue ("" the queue, "-dlq" its DLQ): the actions each needs.
PROSE_ROLES = {
    "sqs_setup": {
        "": ["CreateQueue", "SetQueueAttributes", "GetQueueAttributes", "GetQueueUrl"],
        "-dlq": ["CreateQueue", "SetQueueAttributes", "GetQueueAttributes", "GetQueueUrl"],
    },
    "sqs_redrive": {
        "-dlq": ["StartMessageMoveTask", "ListMessageMoveTasks", "ReceiveMessage",
                 "DeleteMessage", "GetQueueAttributes", "GetQueueUrl"],
        "": ["SendMessage", "GetQueueAttributes"],
    },
    "queue_stats": {
        "": ["GetQueueAttributes"],
        "-dlq": ["GetQueueAttributes", "GetQueueUrl"],
    },
    "check": {"": ["GetQueueAttributes"]},
}  # fmt: skip


def prose_policy(role, name):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [f"sqs:{action}" for action in actions],
                "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}{suffix}",
            }
            for suffix, actions in PROSE_ROLES[role].items()
        ],
    }


def test_the_deploy_role_runs_sqs_setup_twice(as_user):
    """sqs_setup makes the queues, then brings them up to date, with the deploy role's policy."""
    name = f"iam-{uuid.uuid4().hex[:10]}"
    policy = prose_policy("sqs_setup", name)
    queue = SimpleNamespace(url=f"{as_user.admin().meta.endpoint_url}/{ACCOUNT}/{name}")
    key = as_user(policy, queue)
    call_command("sqs_setup", max_receive_count=5, stdout=io.StringIO())
    call_command("sqs_setup", max_receive_count=6, stdout=io.StringIO())
    decisions = as_user.decisions(key)
    assert refused(decisions) == []
    assert granted(policy) - used(decisions) == set()


@pytest.mark.parametrize(
    ("role", "said"),
    [
        ("sqs_redrive", "Moved 1 message(s)"),
        ("queue_stats", "dead_letter=1"),
        ("check", "System check identified"),
    ],
)
def test_the_operators_commands(as_user, role, said):
    """sqs_redrive (moto has no StartMessageMoveTask: receive, send, delete), queue_stats and
    check --deploy, each with the policy aws.md gives it."""
    queue = as_user.queues()
    as_user.admin().send_message(QueueUrl=queue.dlq_url, MessageBody="dead")
    policy = prose_policy(role, queue.name)
    key = as_user(policy, queue)
    out = io.StringIO()
    call_command(role, *(["--deploy"] if role == "check" else []), stdout=out, stderr=out)
    assert said in out.getvalue() and "queues.W003" not in out.getvalue()
    decisions = as_user.decisions(key)
    assert refused(decisions) == []
    unused = granted(policy) - used(decisions)
    if role == "sqs_redrive":  # moto has none: never reached
        dlq = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.name}-dlq"
        unused.discard(("sqs:StartMessageMoveTask", dlq))
    assert unused == set()


def test_a_worker_refused_the_queues_kms_key_stops_at_start_saying_what_it_needs(as_user):
    """A message waits on an SSE-KMS queue, and the worker's role has the SQS policy but not the
    key: runworker exits at once naming kms:Decrypt and what to do, rather than retrying a
    refusal no wait cures; the message stays in the queue."""
    queue = as_user.queues(**ENCRYPTIONS["sse-kms"])
    as_user.admin().send_message(QueueUrl=queue.url, MessageBody="{}")
    key = as_user(documented_policy(1, queue.name, "sse-sqs"), queue)
    try:
        result = run_manage("runworker", env=as_user.environment(key, queue), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("runworker kept retrying a KMS refusal")
    assert result.returncode == 1
    assert "kms:Decrypt" in result.stderr and "KMS key" in result.stderr, result.stderr
    assert ("kms:Decrypt", ENCRYPTIONS["sse-kms"]["KmsMasterKeyId"]) in refused(
        as_user.decisions(key)
    )
    counts = as_user.admin().get_queue_attributes(
        QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == "1"
