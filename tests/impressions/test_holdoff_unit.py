"""The request path's hold-off after a slow Redis failure, on a clock of the test's own."""

import threading

import pytest
from django.test import override_settings

from impressions.holdoff import HoldOff, RedisHeldOff, slow_failure_seconds
from tests.impressions.support import APP_REDIS_TIMEOUT


@pytest.fixture(autouse=True)
def _the_app_s_timeout(settings):
    """A failure is slow past the app's record budget (settings.test gives 2 s)."""
    settings.IMPRESSIONS_REDIS_TIMEOUT = APP_REDIS_TIMEOUT


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def failing_call(holdoff, clock, took):
    """A call that fails after `took` seconds; the error it raised."""
    try:
        with holdoff.attempt():
            clock.now += took
            raise ConnectionError("no answer")
    except (ConnectionError, RedisHeldOff) as error:
        return error
    raise AssertionError("the call did not fail")


def test_a_slow_failure_holds_calls_off_one_second_then_one_call_tries():
    clock = Clock()
    holdoff = HoldOff(clock)
    assert not isinstance(failing_call(holdoff, clock, 2.0), RedisHeldOff)
    clock.now += 0.9
    assert isinstance(failing_call(holdoff, clock, 0), RedisHeldOff)  # not sent
    clock.now += 0.2
    # The wait is over: this call tries, and fails slowly again: 2 s now, then 4, 8, 10, 10.
    assert not isinstance(failing_call(holdoff, clock, 2.0), RedisHeldOff)
    waits = [holdoff.wait]
    for _ in range(4):
        clock.now += holdoff.wait
        failing_call(holdoff, clock, 2.0)
        waits.append(holdoff.wait)
    assert waits == [2.0, 4.0, 8.0, 10.0, 10.0]
    clock.now += 10
    with holdoff.attempt():  # answers again: no hold-off
        pass
    assert (holdoff.wait, holdoff.holding()) == (0.0, False)


def test_failures_within_the_timeout_hold_nothing_off():
    """A refused connection, a Redis that does not answer within IMPRESSIONS_REDIS_TIMEOUT: the
    next call tries as before (it loses nothing more by trying)."""
    clock = Clock()
    holdoff = HoldOff(clock)
    for took in (0.0, 0.1, slow_failure_seconds()):
        failing_call(holdoff, clock, took)
        assert not holdoff.holding()
    with override_settings(IMPRESSIONS_REDIS_TIMEOUT=1.0):
        failing_call(holdoff, clock, 3.0)  # within 4 of its timeouts
        assert not holdoff.holding()


def test_while_one_call_tries_again_the_others_still_skip():
    clock = Clock()
    holdoff = HoldOff(clock)
    failing_call(holdoff, clock, 1.0)
    clock.now += 1.0
    others = []
    with holdoff.attempt():  # the trying call, in this thread
        thread = threading.Thread(target=lambda: others.append(holdoff.holding()))
        thread.start()
        thread.join()
        assert holdoff.holding() is False  # its own further calls go
    assert others == [True]
    assert holdoff.holding() is False  # it succeeded: every call goes


def test_calls_in_flight_when_redis_failed_slowly_do_not_lengthen_the_wait():
    """Every thread of a busy process waits on the same resolver: their calls, all started
    before the first one failed, fail slowly together. One outage, one first wait of 1 s (each
    call doubled it: 10 s at once); one of them failing after the wait is over does not
    lengthen it either, nor lets a second call try while the trying one is out."""
    clock = Clock()
    holdoff = HoldOff(clock)
    in_flight = [holdoff.attempt() for _ in range(5)]
    for call in in_flight:
        call.__enter__()
    clock.now += 2.0
    for call in in_flight[:4]:
        call.__exit__(ConnectionError, ConnectionError("no answer"), None)
    assert holdoff.wait == 1.0
    clock.now += 1.0
    trying = holdoff.attempt()
    trying.__enter__()
    clock.now += 1.0
    in_flight[4].__exit__(ConnectionError, ConnectionError("no answer"), None)
    assert holdoff.wait == 1.0
    other = []
    thread = threading.Thread(target=lambda: other.append(holdoff.holding()))
    thread.start()
    thread.join()
    assert other == [True]
    trying.__exit__(ConnectionError, ConnectionError("no answer"), None)
    assert holdoff.wait == 2.0
