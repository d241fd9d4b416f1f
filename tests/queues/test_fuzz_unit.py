"""Fuzzing both backends' message parsers (Hypothesis): whatever a queue carries, the parser
either reads a message within bounds or refuses it with the exceptions that set it aside.

The profiles (tests/conftest.py) keep this to a few seconds; CI runs derandomized.
"""

import json
import zlib

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from rq.exceptions import NoSuchJobError

from queues.bounds import MAX_ARGUMENT_BYTES, MAX_NESTING_DEPTH, max_attempt
from queues.exceptions import MalformedMessage, RefusedJob
from queues.rq import jobs
from queues.rq.worker import TaskJob, TaskWorker
from queues.sqs import messages
from tests.queues.rq.support import rq_settings

MAX_ATTEMPTS = 3
GOOD = {"v": 1, "id": "x", "task": "tests.queues.tasks.record_marker", "args": [], "kwargs": {}}


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Values that sit at or beyond each bound.
edge_values = st.sampled_from(
    [
        0,
        -1,
        10**13,
        2**63,
        max_attempt(MAX_ATTEMPTS),
        max_attempt(MAX_ATTEMPTS) + 1,
        "",
        "x" * 129,
        "a.b" * 100,
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2030-01-01T00:00:00",
        ["w"] * (max_attempt(MAX_ATTEMPTS) + 1),
        ["w" * 301],
        nested(MAX_NESTING_DEPTH + 2),
        ["x" * (MAX_ARGUMENT_BYTES + 1)],
        {"k": "v"},
        True,
        1.5,
    ]
)
field_values = json_values | edge_values
envelopes = st.fixed_dictionaries(
    {},
    optional={
        name: field_values
        for name in (
            "v",
            "id",
            "task",
            "args",
            "kwargs",
            "queue_name",
            "backend",
            "run_after",
            "enqueued_at",
            "attempt",
            "worker_ids",
        )
    },
).map(lambda fields: {**GOOD, **fields})
bodies = (
    envelopes.map(json.dumps)
    | st.text(max_size=200)
    | st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth)
    | st.integers(1, 3000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth)
)


@given(bodies)
def test_the_sqs_parser_reads_within_bounds_or_sets_aside(body):
    try:
        envelope = messages.decode_message(body, MAX_ATTEMPTS)
    except MalformedMessage:
        return  # set aside: the dead-letter queue, with this reason
    assert 1 <= envelope["attempt"] <= max_attempt(MAX_ATTEMPTS)
    assert len(envelope["worker_ids"]) == envelope["attempt"] - 1
    following = messages.next_attempt_body(body, envelope, "host:1:sqs")
    assert json.loads(following)["attempt"] == envelope["attempt"] + 1


def compressed(value):
    return zlib.compress(json.dumps(value).encode())


job_data = st.one_of(
    st.builds(
        lambda func, args: compressed([func, None, args, {}]),
        st.sampled_from([jobs.TRAMPOLINE, "os.system", ""]) | st.text(max_size=10),
        st.tuples(
            st.sampled_from(["tests.queues.tasks.record_marker", "os.system"]) | field_values,
            field_values,
            field_values,
        ).map(list)
        | field_values,
    ),
    st.binary(max_size=64),
    st.just(zlib.compress(b"[" * 2000 + b"]" * 2000)),
    st.just(zlib.compress(b" " * (jobs.MAX_DATA_BYTES + 1))),  # a small zlib bomb
)
text_fields = st.binary(max_size=40) | st.sampled_from(
    [b"2030-01-01T00:00:00.000000Z", b"queued", b"failed", b"10", b"-1", b"1e99", b"nonsense"]
)
meta_values = st.builds(
    lambda value: json.dumps(value).encode(),
    st.fixed_dictionaries(
        {}, optional={"backend": field_values, "worker_ids": field_values, "x": field_values}
    )
    | field_values,
)
job_hashes = st.fixed_dictionaries(
    {b"data": job_data},
    optional={
        b"meta": meta_values | st.binary(max_size=40),
        b"exc_info": st.binary(max_size=40) | st.just(zlib.compress(b"x" * (2**21))),
        b"dependency_ids": st.binary(max_size=20) | st.just(b"[" * 5000),
        b"retry_intervals": st.binary(max_size=20) | meta_values,
        **{
            name: text_fields
            for name in (
                b"created_at",
                b"enqueued_at",
                b"status",
                b"origin",
                b"timeout",
                b"result_ttl",
                b"retries_left",
                b"number_of_retries",
                b"worker_name",
                b"description",
                b"webhooks",
                b"success_callback_name",
            )
        },
    },
)


@pytest.fixture(scope="module")
def rq_backend_settings():
    """TASKS with an RQ backend (no Redis is reached: only the job's fields are read)."""
    from django.test import override_settings

    with override_settings(**rq_settings("redis://127.0.0.1:1/0")):
        yield


@given(job_hashes)
def test_the_rq_job_reader_reads_within_bounds_or_refuses(rq_backend_settings, raw):
    job = TaskJob("x", connection=redis.Redis(host="127.0.0.1", port=1))
    try:
        job.restore(raw)
    except NoSuchJobError:
        return  # RQ skips a hash without data, as it always has
    refusal = TaskWorker._refusal(job)
    if refusal is None:
        task_path, args, kwargs = job.args
        assert task_path == "tests.queues.tasks.record_marker"
        assert len(json.dumps([args, kwargs])) <= MAX_ARGUMENT_BYTES
    else:
        assert isinstance(refusal, RefusedJob | MalformedMessage)
