"""manage.py sqs_setup against the SQS-protocol server (moto over HTTP): idempotent, converging."""

import json
import uuid

import pytest

pytestmark = pytest.mark.sqs


def attributes(client, name):
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    return client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_creates_queue_and_dlq_then_converges(manage, setup_env, moto_sqs_client):
    name = f"setup-{uuid.uuid4().hex[:8]}"
    args = ("sqs_setup", "--queue-name", name, "--max-receive-count", "4")
    first = manage(*args, "--visibility-timeout", "45", env=setup_env)
    assert first.returncode == 0, first.stderr
    assert f"queue {name}: created" in first.stdout
    assert f"dead-letter queue {name}-dlq: created" in first.stdout

    again = manage(*args, "--visibility-timeout", "45", env=setup_env)
    assert again.returncode == 0, again.stderr
    assert f"queue {name}: exists" in again.stdout

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
    changed = manage("sqs_setup", "--queue-name", name, "--max-receive-count", "2", env=setup_env)
    assert changed.returncode == 0, changed.stderr
    assert int(json.loads(attributes(client, name)["RedrivePolicy"])["maxReceiveCount"]) == 2


def test_queue_name_from_the_sqs_backend_settings(manage, setup_env):
    name = f"configured-{uuid.uuid4().hex[:8]}"
    env = {**setup_env, "QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": name}
    result = manage("sqs_setup", "--dlq-name", f"{name}-dead", env=env)
    assert result.returncode == 0, result.stderr
    assert f"queue {name}: created" in result.stdout
    assert f"dead-letter queue {name}-dead: created" in result.stdout


def test_bad_input_is_a_clear_error(manage, setup_env):
    missing = manage("sqs_setup", env=setup_env)
    assert missing.returncode != 0
    assert "--queue-name" in missing.stderr
    fifo = manage("sqs_setup", "--queue-name", "jobs.fifo", env=setup_env)
    assert fifo.returncode != 0
    assert "FIFO" in fifo.stderr
    zero = manage("sqs_setup", "--queue-name", "jobs", "--max-receive-count", "0", env=setup_env)
    assert zero.returncode != 0
    assert "max receive count" in zero.stderr


def test_unreachable_endpoint_is_reported(manage, setup_env):
    env = {**setup_env, "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    result = manage("sqs_setup", "--queue-name", "jobs", env=env, timeout=60)
    assert result.returncode != 0
    assert "unreachable" in result.stderr


def test_a_queue_made_elsewhere_keeps_its_dead_letter_queue_and_settings(
    manage, setup_env, moto_sqs_client
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
    result = manage("sqs_setup", "--queue-name", name, env=setup_env)
    assert result.returncode == 0, result.stderr
    assert f"keeping the queue's dead-letter queue {name}-deadletter" in result.stdout
    queue = attributes(client, name)
    redrive = json.loads(queue["RedrivePolicy"])
    assert (redrive["deadLetterTargetArn"], int(redrive["maxReceiveCount"])) == (dlq_arn, 10)
    assert queue["VisibilityTimeout"] == "300"
    names = [
        url.rsplit("/", 1)[-1] for url in client.list_queues(QueueNamePrefix=name)["QueueUrls"]
    ]
    assert sorted(names) == [name, f"{name}-deadletter"]

    # Options still change it, explicitly.
    changed = manage(
        "sqs_setup", "--queue-name", name, "--max-receive-count", "6", "--visibility-timeout",
        "90", env=setup_env,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    queue = attributes(client, name)
    redrive = json.loads(queue["RedrivePolicy"])
    assert (redrive["deadLetterTargetArn"], int(redrive["maxReceiveCount"])) == (dlq_arn, 6)
    assert queue["VisibilityTimeout"] == "90"
