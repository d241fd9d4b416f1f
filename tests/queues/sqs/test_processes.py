"""`runworker` on SQS in subprocesses: signals, --concurrency, start-up errors, SQS_* variables."""

import json
import os
import signal
import time

import pytest
from django.core.checks import ERROR, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.processes import rest_of_stderr, run_workers_then, start_manage, wait_for_line
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import dead_letter_after_one_receive, dlq_bodies, worker_env
from tests.settings_modules import load_settings

pytestmark = pytest.mark.sqs


SQS_VARIABLES = [
    ("SQS_JOB_TIMEOUT", "0", "JOB_TIMEOUT", "a whole number of seconds from 1 to 43020"),
    ("SQS_MAX_MESSAGES", "50", "MAX_MESSAGES", "a whole number from 1 to 10"),
    ("SQS_WAIT_TIME_SECONDS", "21", "WAIT_TIME_SECONDS", "a whole number of seconds from 0"),
    ("SQS_VISIBILITY_TIMEOUT", "0", "VISIBILITY_TIMEOUT", "a whole number of seconds from 1"),
    ("TASKS_MAX_ATTEMPTS", "0", "MAX_ATTEMPTS", "a whole number from 1 to 100"),
    ("TASKS_RETRY_DELAY", "901", "RETRY_DELAY", "a whole number of seconds from 0 to 900"),
    ("TASK_MODULES", "tests/queues", "TASK_MODULES", "a list of module names"),
    ("SQS_QUEUE_URL", "notaurl", "QUEUE_URL", "an SQS queue URL: https://sqs.<region>.amazonaws"),
    (
        "SQS_QUEUE_NAME",
        "https://sqs.eu-west-1.amazonaws.com/1/q",
        "QUEUE_NAME",
        "an SQS queue name",
    ),
]


def assert_named(text, variable, value, option, expected):
    # The backend's check names its OPTIONS key; the site's names the variable that set it, and
    # what the backend accepts.
    assert f"(queues.E005) TASKS['default']['OPTIONS']: {option}=" in text, text
    said = (
        f"(casusult.E002) The environment variable {variable}={value!r} sets"
        f" TASKS['default']['OPTIONS'][{option!r}], which must be {expected}"
    )
    assert said in text, text


def test_an_sqs_worker_variable_out_of_range_fails_check_naming_it(manage):
    variable, value, option, expected = SQS_VARIABLES[0]
    result = manage("check", env={"QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q", variable: value})
    assert result.returncode != 0
    assert_named(result.stderr, variable, value, option, expected)


@pytest.mark.parametrize(("variable", "value", "option", "expected"), SQS_VARIABLES)
def test_sqs_worker_variables_are_validated_naming_the_variable(
    monkeypatch, variable, value, option, expected
):
    # What `manage.py check` runs with that environment (the run above), in this process: the
    # settings it loads, the checks with that environment (casusult.E002 reads the variables).
    env = {"QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q", variable: value}
    loaded = load_settings("settings.test", env)
    for name, set_to in env.items():
        monkeypatch.setenv(name, set_to)
    with override_settings(TASKS=loaded.TASKS, RQ_QUEUES=loaded.RQ_QUEUES):
        errors = [str(error) for error in run_checks() if error.level >= ERROR]
    assert_named("\n".join(errors), variable, value, option, expected)


def test_a_variable_that_is_no_number_fails_naming_it():
    env = {"QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q", "SQS_MAX_MESSAGES": "ten"}
    with pytest.raises(ImproperlyConfigured, match="SQS_MAX_MESSAGES"):
        load_settings("settings.test", env)


def test_sigterm_mid_task_finishes_it_receives_nothing_new_and_exits_zero(sqs):
    # Each runs until the test releases it (10 s at most): once the worker said it stops.
    queue_tasks.held_marker.enqueue("one", 10)
    queue_tasks.held_marker.enqueue("two", 10)
    dead_letter_after_one_receive(sqs)
    process = start_manage("runworker", env=worker_env(sqs, SQS_VISIBILITY_TIMEOUT="5"))
    deadline = time.monotonic() + 30
    while not queue_tasks.markers() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    try:
        lines = wait_for_line(process, "Stop requested")
    finally:
        for name in ("one", "two"):
            queue_tasks.release(name)
    stderr = "".join(lines) + rest_of_stderr(process)

    assert process.returncode == 0, stderr
    started = queue_tasks.markers()
    assert len(started) == 2, stderr  # the running task finished; the other never started
    name = started[0].removeprefix("start:")
    assert started == [f"start:{name}", name]
    assert "outcome=succeeded" in stderr
    # The other message was handed back for other workers, not deleted and not kept hidden, and
    # re-sent: its receive without a run does not count towards the DLQ (after one here).
    left = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1).get("Messages", [])
    assert dlq_bodies(sqs) == []
    assert [json.loads(message["Body"])["args"][0] for message in left] == [
        {"one": "two", "two": "one"}[name]
    ]


def test_sigterm_stops_an_idle_worker_at_once_not_after_its_long_poll(sqs):
    # SQS's longest poll: stopping used to wait for its answer, up to 20 s per worker and deploy.
    process = start_manage("runworker", env=worker_env(sqs, SQS_WAIT_TIME_SECONDS="20"))
    try:
        wait_for_line(process, "Visibility timeout")  # logged just before the first poll
        time.sleep(1)  # in the poll now, with no message to answer it
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
        took = time.monotonic() - stopped_at
        stderr = rest_of_stderr(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert took < 2, (took, stderr)
    assert "Stopping without waiting for the long poll's answer" in stderr, stderr
    assert "stopped after 0 message(s)" in stderr, stderr


def test_a_forced_stop_gives_back_the_messages_it_held_at_once(sqs):
    queue_tasks.slow_marker.enqueue("long", 20)
    for name in ("a", "b"):
        queue_tasks.record_marker.enqueue(name)
    process = start_manage("runworker", env=worker_env(sqs, SQS_VISIBILITY_TIMEOUT="60"))
    deadline = time.monotonic() + 30
    while "start:long" not in queue_tasks.markers() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # a second stop, not the same one arriving twice
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    assert "Second stop signal" in stderr
    # Back in the queue now, the interrupted task's message too, not in 60 s.
    received = {}
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        answer = sqs.client.receive_message(
            QueueUrl=sqs.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            received[message["MessageId"]] = json.loads(message["Body"])["args"][0]
    done = set(queue_tasks.markers())
    assert "long" not in done  # it was interrupted, and will run again
    # Those that ran before it (SQS does not promise order) are deleted; the others come back.
    assert sorted(received.values()) == sorted({"a", "b", "long"} - done), stderr


def test_missing_queue_fails_start_up_naming_the_variable():
    env = {"QUEUE_BACKEND": "sqs", "SQS_QUEUE_URL": None, "SQS_QUEUE_NAME": None}
    with pytest.raises(ImproperlyConfigured) as refused:
        load_settings("settings.test", env)
    assert "SQS_QUEUE_URL" in str(refused.value) and "SQS_QUEUE_NAME" in str(refused.value)


def test_a_worker_process_killed_under_concurrency_stops_the_rest_loudly(sqs):
    code, stderr = run_workers_then(
        worker_env(sqs), 2, lambda parent, children: os.kill(children[0], signal.SIGKILL)
    )
    assert code == 1, stderr
    assert "was killed by signal 9; stopping the other workers" in stderr
    assert "exit codes [-9, 0]" in stderr or "exit codes [0, -9]" in stderr, stderr


def test_start_up_errors_of_worker_processes_are_reported(sqs, manage):
    env = worker_env(sqs, SQS_QUEUE_URL=None, SQS_QUEUE_NAME="no-such-queue")
    result = manage("runworker", "--concurrency", "2", env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("the queue server is unreachable or refused") == 2, result.stderr
    assert "NonExistentQueue" in result.stderr or "does not exist" in result.stderr
    assert result.stderr.count("create the queue and its dead-letter queue with") == 2


def test_a_worker_without_a_region_says_which_variable_to_set(sqs, manage):
    env = worker_env(sqs, AWS_REGION=None, AWS_DEFAULT_REGION=None, AWS_CONFIG_FILE="/nonexistent")
    result = manage("runworker", "--burst", env=env, timeout=60)
    assert result.returncode == 1
    assert "TASKS['default'] (SQSBackend): the queue server is unreachable" in result.stderr
    assert "set AWS_DEFAULT_REGION" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("broken", "remedy"),
    [
        ({"missing": True}, "create the queue and its dead-letter queue with `manage.py sqs_setup`"),
        ({"AWS_REGION": None, "AWS_DEFAULT_REGION": None, "AWS_CONFIG_FILE": "/nonexistent"},
         "set AWS_DEFAULT_REGION"),
    ],
)  # fmt: skip
def test_a_long_running_worker_misconfigured_at_start_exits_naming_the_remedy(
    sqs, manage, broken, remedy
):
    """Not --burst, and QUEUE_URL (what production sets): a queue that is not there, or no
    region, is no outage to ride out: retried for ever, it only ever logged a warning."""
    env = worker_env(sqs, **broken)
    if env.pop("missing", None):
        env["SQS_QUEUE_URL"] = f"{sqs.url}-missing"
    result = manage("runworker", env=env, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "the queue server is unreachable or refused" in result.stderr
    assert remedy in result.stderr, result.stderr


def test_sqs_max_messages_variable_reaches_the_worker(manage):
    env = {"QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q", "SQS_MAX_MESSAGES": "1"}
    code = "from django.tasks import task_backends; print(task_backends['default'].options['MAX_MESSAGES'])"
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1"  # after the shell's "objects imported" line
