"""manage.py sqs_setup against the SQS-protocol server (moto over HTTP): idempotent, converging.

The command runs in this process as manage.py runs it (call_command), with the settings a process
of that environment loads and the environment boto3 reads; one real run shows a refusal stopping
`manage.py sqs_setup` with its message."""

import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.settings_modules import load_settings

pytestmark = pytest.mark.sqs


@pytest.fixture
def sqs_setup(monkeypatch):
    """`manage.py sqs_setup ARGS` with the environment `env`, in this process: settings.test
    loaded afresh with it gives the task backend, the variables are set for boto3. Returns what
    it printed; a refusal raises CommandError (manage.py prints it and exits 1)."""

    def run(*args, env):
        loaded = load_settings("settings.test", env)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        out = io.StringIO()
        with override_settings(TASKS=loaded.TASKS):
            call_command("sqs_setup", *args, stdout=out)
        return out.getvalue()

    return run


def attributes(client, name):
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    return client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_creates_queue_and_dlq_then_converges(sqs_setup, setup_env, moto_sqs_client):
    name = f"setup-{uuid.uuid4().hex[:8]}"
    args = ("--queue-name", name, "--max-receive-count", "4")
    first = sqs_setup(*args, "--visibility-timeout", "45", env=setup_env)
    assert f"queue {name}: created" in first
    assert f"dead-letter queue {name}-dlq: created" in first
    # What to set, then the URL alone on the last line (for scripts).
    *_, what, url = first.splitlines()
    assert what == (
        "Set TASKS['default']['OPTIONS']['QUEUE_URL'] (or the variable your settings read it"
        " from) to:"
    )
    assert url == moto_sqs_client.get_queue_url(QueueName=name)["QueueUrl"]

    again = sqs_setup(*args, "--visibility-timeout", "45", env=setup_env)
    assert f"queue {name}: exists" in again

    client = moto_sqs_client
    queue, dlq = attributes(client, name), attributes(client, f"{name}-dlq")
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 4
    assert queue["VisibilityTimeout"] == "45"
    assert queue["ReceiveMessageWaitTimeSeconds"] == "20"
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    names = [url.rsplit("/", 1)[-1] for url in client.list_queues()["QueueUrls"]]
    assert names.count(name) == 1 and names.count(f"{name}-dlq") == 1

    # A changed policy is applied to the existing queue, not refused.
    sqs_setup("--queue-name", name, "--max-receive-count", "2", env=setup_env)
    assert int(json.loads(attributes(client, name)["RedrivePolicy"])["maxReceiveCount"]) == 2


def test_queue_name_from_the_sqs_backend_settings(sqs_setup, setup_env):
    name = f"configured-{uuid.uuid4().hex[:8]}"
    env = {**setup_env, "QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": name}
    printed = sqs_setup("--dlq-name", f"{name}-dead", env=env)
    assert f"queue {name}: created" in printed
    assert f"dead-letter queue {name}-dead: created" in printed


def test_a_refusal_stops_the_command_with_its_message(manage, setup_env):
    missing = manage("sqs_setup", env=setup_env)
    assert missing.returncode != 0
    assert "CommandError: No queue name: pass --queue-name" in missing.stderr


def test_bad_input_is_a_clear_error(sqs_setup, setup_env):
    with pytest.raises(CommandError, match="--queue-name"):
        sqs_setup(env=setup_env)
    with pytest.raises(CommandError, match="FIFO"):
        sqs_setup("--queue-name", "jobs.fifo", env=setup_env)
    with pytest.raises(CommandError, match="max receive count"):
        sqs_setup("--queue-name", "jobs", "--max-receive-count", "0", env=setup_env)


def test_a_queue_url_the_backend_refuses_is_named(sqs_setup, setup_env):
    # Not taken for no URL at all ("No queue name"): the backend's own refusal, naming the key.
    env = {**setup_env, "QUEUE_BACKEND": "sqs", "SQS_QUEUE_URL": "casusult-jobs"}
    with pytest.raises(CommandError, match=r"OPTIONS'\]: QUEUE_URL='casusult-jobs' is not valid"):
        sqs_setup(env=env)


def test_unreachable_endpoint_is_reported(sqs_setup, setup_env):
    env = {**setup_env, "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    with pytest.raises(CommandError, match="unreachable"):
        sqs_setup("--queue-name", "jobs", env=env)


def test_a_queue_made_elsewhere_keeps_its_dead_letter_queue_and_settings(
    sqs_setup, setup_env, moto_sqs_client
):
    """A queue made by Terraform, say, with its own DLQ: sqs_setup must not repoint its redrive
    policy to a new <name>-dlq (stranding what the old one holds) nor undo its other settings."""
    client, name = moto_sqs_client, f"terraform-{uuid.uuid4().hex[:8]}"
    dlq_url = client.create_queue(QueueName=f"{name}-deadletter")["QueueUrl"]
    dlq_arn = attributes(client, f"{name}-deadletter")["QueueArn"]
    client.send_message(QueueUrl=dlq_url, MessageBody="dead since yesterday")
    policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "10"}
    client.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": "300", "RedrivePolicy": json.dumps(policy)},
    )
    printed = sqs_setup("--queue-name", name, env=setup_env)
    assert f"keeping the queue's dead-letter queue {name}-deadletter" in printed
    queue = attributes(client, name)
    redrive = json.loads(queue["RedrivePolicy"])
    assert (redrive["deadLetterTargetArn"], int(redrive["maxReceiveCount"])) == (dlq_arn, 10)
    assert queue["VisibilityTimeout"] == "300"
    names = [
        url.rsplit("/", 1)[-1] for url in client.list_queues(QueueNamePrefix=name)["QueueUrls"]
    ]
    assert sorted(names) == [name, f"{name}-deadletter"]

    # Options still change it, explicitly.
    sqs_setup(
        "--queue-name",
        name,
        "--max-receive-count",
        "6",
        "--visibility-timeout",
        "90",
        env=setup_env,
    )
    queue = attributes(client, name)
    redrive = json.loads(queue["RedrivePolicy"])
    assert (redrive["deadLetterTargetArn"], int(redrive["maxReceiveCount"])) == (dlq_arn, 6)
    assert queue["VisibilityTimeout"] == "90"


def test_backend_option_takes_that_alias_queue_client_and_attempts(
    monkeypatch, setup_env, sqs_endpoint_url, moto_sqs_client
):
    # The impressions tasks on an SQS backend of their own (IMPRESSIONS_TASK_BACKEND), "default"
    # being another backend: sqs_setup used to know only TASKS["default"], so it said "No queue
    # name" although the SQS backend named one, took boto3's endpoint rather than the backend's
    # CLIENT_PARAMS, and printed TASKS['default'] as the setting to fill.
    name = f"counting-{uuid.uuid4().hex[:8]}"
    loaded = load_settings("settings.test", setup_env)
    # boto3's own endpoint leads nowhere: only the backend's CLIENT_PARAMS reach the server.
    env = {**setup_env, "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    counting = {
        "BACKEND": "queues.sqs.backend.SQSBackend",
        "OPTIONS": {
            "QUEUE_NAME": name,
            "MAX_ATTEMPTS": 7,
            "CLIENT_PARAMS": {"endpoint_url": sqs_endpoint_url},
        },
    }
    out = io.StringIO()
    with override_settings(TASKS={**loaded.TASKS, "counting": counting}):
        call_command("sqs_setup", "--backend", "counting", stdout=out)
        with pytest.raises(CommandError, match=r"TASKS\['default'\] is not an SQS backend"):
            call_command("sqs_setup", "--backend", "default", stdout=io.StringIO())
        with pytest.raises(CommandError, match=r"TASKS has no backend 'nope'"):
            call_command("sqs_setup", "--backend", "nope", stdout=io.StringIO())
    *_, what, url = out.getvalue().splitlines()
    assert what == (
        "Set TASKS['counting']['OPTIONS']['QUEUE_URL'] (or the variable your settings read it"
        " from) to:"
    )
    assert url == moto_sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
    redrive = json.loads(attributes(moto_sqs_client, name)["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 7  # never below that backend's MAX_ATTEMPTS
