"""The one failure policy (rlaif_ray/driver/calls.py) on real Ray actors: small Python actors
that can be killed by PID, made to raise, or made silent, standing in for engines."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
import ray

from rlaif_ray.config import Resources
from rlaif_ray.driver.calls import Call, CallPolicy, Recovery, Usage
from rlaif_ray.driver.pools import ActorPool
from rlaif_ray.errors import ActorCodeError, ActorFailed, last_line

# Ray's workers cannot import a test module: ship this one's classes by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Worker:
    """Doubles numbers; remembers what it was told by `on_replace` (`catch_up`)."""

    def __init__(self, rank: int):
        self.rank, self.version = rank, 0

    def ping(self) -> str:
        return f"w-{self.rank}"

    def pid(self) -> int:
        return os.getpid()

    def catch_up(self, version: int) -> None:
        self.version = version

    @ray.method(num_returns=2)
    def double(self, xs: list[int], sleep_s: float = 0.0):
        time.sleep(sleep_s)
        return [2 * x for x in xs], {"rank": self.rank, "version": self.version}

    def fail(self, record: int):
        raise ValueError(f"record {record}: not a prompt\n(more text the user need not see)")


def make_pool(count=2, replaceable=True, max_restarts=2, timeout_s=30.0):
    pool = ActorPool("worker", Worker, Resources(num_cpus=0.01), count, lambda r: (r,), {}, 60.0,
                     policy=CallPolicy(timeout_s=timeout_s, max_restarts=max_restarts, startup_timeout_s=60.0),
                     replaceable=replaceable, recovery=Recovery())
    pool.wait_ready(60.0)
    return pool


@pytest.fixture
def pool(ray_local):
    p = make_pool()
    yield p
    p.shutdown()


def kill(pool, i):
    os.kill(ray.get(pool.actors[i].pid.remote()), signal.SIGKILL)


def test_map_returns_payload_refs_and_fetched_stats(pool):
    calls = pool.map("double", [([1, 2],), ([3],)], prompts=[2, 1])
    assert [ray.get(c.refs[0]) for c in calls] == [[2, 4], [6]]
    assert [c.value["rank"] for c in calls] == [0, 1]
    assert pool.recovery.metrics() == {"recovery/actor_restarts": 0, "recovery/redone_prompts": 0}


def test_actor_killed_inside_a_call_is_replaced_and_the_call_redone(pool):
    pool.on_replace = lambda actor, name: ray.get(actor.catch_up.remote(7))
    pid = ray.get(pool.actors[0].pid.remote())   # asked first: an actor answers one call at a time
    calls = [pool.submit(0, "double", [1, 2, 3], 2.0, prompts=3), pool.submit(1, "double", [4], prompts=1)]
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    pool.wait(calls)
    assert ray.get(calls[0].refs[0]) == [2, 4, 6]          # same arguments, same result
    assert calls[0].value["version"] == 7                   # the replacement was brought up to date first
    assert calls[1].value["version"] == 0                   # the other actor was left alone
    assert pool.recovery.metrics() == {"recovery/actor_restarts": 1, "recovery/redone_prompts": 3,
                                       "recovery/worker/restarts": 1, "recovery/worker/redone_prompts": 3}


def test_a_call_that_answered_while_another_actor_was_replaced_is_not_late(ray_local):
    # Replacing actor 0 (start-up and catch-up) blocks the driver past actor 1's deadline;
    # actor 1 answered long before: it is not replaced, its call not redone.
    pool = make_pool(timeout_s=3.0)
    try:
        pool.on_replace = lambda actor, name: time.sleep(5.0)  # a replacement slower than the call timeout
        pid = ray.get(pool.actors[0].pid.remote())
        calls = [pool.submit(0, "double", [1], 2.0, prompts=1), pool.submit(1, "double", [2], 0.5, prompts=1)]
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        pool.wait(calls)
        assert [ray.get(c.refs[0]) for c in calls] == [[2], [4]]
        assert pool.recovery.metrics() == {"recovery/actor_restarts": 1, "recovery/redone_prompts": 1,
                                           "recovery/worker/restarts": 1, "recovery/worker/redone_prompts": 1}
    finally:
        pool.shutdown()


def test_calls_queued_on_a_killed_actor_all_move_to_one_replacement(pool):
    # Pipelined mode queues several calls on one actor; the first failure replaces it, the
    # others are redone on that replacement instead of replacing it again (and again).
    pid = ray.get(pool.actors[0].pid.remote())
    calls = [pool.submit(0, "double", [k], 1.0, prompts=1) for k in range(3)]
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    pool.wait(calls)
    assert [ray.get(c.refs[0]) for c in calls] == [[0], [2], [4]]
    assert pool.recovery.metrics() == {"recovery/actor_restarts": 1, "recovery/redone_prompts": 3,
                                       "recovery/worker/restarts": 1, "recovery/worker/redone_prompts": 3}


def test_actor_killed_between_calls_is_replaced_at_its_next_call(pool):
    pool.call(0, "double", [1])
    kill(pool, 0)
    time.sleep(0.5)
    assert pool.call(0, "double", [5], prompts=1) == {"rank": 0, "version": 0}
    assert pool.restarts == 1


def test_silent_actor_passes_its_timeout_and_is_replaced(ray_local):
    pool = make_pool(count=1, timeout_s=3.0)
    try:
        os.kill(ray.get(pool.actors[0].pid.remote()), signal.SIGSTOP)   # wedged: alive, never answers
        start = time.monotonic()
        assert pool.call(0, "double", [1]) == {"rank": 0, "version": 0}
        assert 3.0 <= time.monotonic() - start < 60.0 and pool.restarts == 1
    finally:
        pool.shutdown()


def test_the_actors_own_error_stops_at_once_in_one_line(pool):
    with pytest.raises(ActorCodeError) as err:
        pool.call(1, "fail", 17)
    message = str(err.value)
    assert "\n" not in message and message.startswith("worker-1: fail raised ValueError")
    assert "(more text the user need not see)" in message   # the error's last line, not the traceback
    assert pool.restarts == 0                                # not retried as if the actor had died


def test_gives_up_after_max_restarts_for_one_call(ray_local):
    pool = make_pool(count=1, max_restarts=1)
    try:
        pool.on_replace = lambda actor, name: os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)
        kill(pool, 0)
        with pytest.raises(ActorFailed, match=r"worker-0: .*gave up after 1 replacements"):
            pool.call(0, "double", [1])
    finally:
        pool.shutdown()


def test_a_group_that_cannot_replace_one_member_reports_the_loss(ray_local):
    pool = make_pool(count=2, replaceable=False)
    try:
        kill(pool, 1)
        with pytest.raises(ActorFailed) as err:
            pool.call_all("double", [1])
        assert err.value.actor == "worker-1" and "died" in str(err.value) and "\n" not in str(err.value)
    finally:
        pool.shutdown()


def test_a_group_member_failing_because_a_peer_died_reports_the_death(ray_local):
    # In a learner group every member's collective fails once one member dies; the survivor's
    # error must read as the loss (the group is rebuilt), not as a bug (the run would stop).
    pool = make_pool(count=2, replaceable=False)
    try:
        with pytest.raises(ActorCodeError, match="worker-0: fail raised ValueError"):
            pool.call(0, "fail", 3)          # the whole group alive: the member's own error
        kill(pool, 1)
        with pytest.raises(ActorFailed) as err:
            pool.call(0, "fail", 3)          # stands in for a collective broken by worker-1's death
        assert err.value.actor == "worker-1" and "worker-0" in str(err.value)
    finally:
        pool.shutdown()


def test_last_line_keeps_messages_to_one_line():
    assert last_line(ValueError("a\n\n  b  \n")) == "ValueError: b"
    assert last_line(KeyError("x")) == "KeyError: 'x'"
    assert len(last_line(RuntimeError("y" * 1000))) <= 301


def test_usage_counts_an_actors_queued_calls_once():
    # Two calls sent together at t=0 to one actor: it works on the second only after the first.
    usage, first, second = Usage(), Call(0, "m", (), 0, sent_at=0.0), Call(0, "m", (), 0, sent_at=0.0)
    usage.finished(first, 1.0)
    usage.finished(second, 3.0)
    assert usage.busy_s == 3.0                     # 1 s + 2 s, not 1 s + 3 s
    usage.finished(Call(1, "m", (), 0, sent_at=2.5), 3.0)
    assert usage.busy_s == 3.5                     # another actor, in parallel


def test_pool_usage_measures_busy_time(pool):
    pool.usage.reset()
    start = time.monotonic()
    pool.map("double", [([1], 1.0), ([2], 0.0)])
    wall = time.monotonic() - start
    assert 1.0 <= pool.usage.busy_s <= wall * 2     # actor 0 slept 1 s; actor 1 almost nothing
    assert 0.9 <= pool.usage.waited_s <= wall
