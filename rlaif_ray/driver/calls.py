"""The one way the drivers call actors, and the one failure policy.

    calls = pool.map("generate", [(items_0, v), (items_1, v)], prompts=[4, 4])
    shards = [c.refs[0] for c in calls]           # payloads stay in the object store
    stats = [c.value for c in calls]              # the small last return value, fetched

Every call to an actor goes through `submit` + `wait` (or `map` / `call_all`, which are
both at once). What happens when a call does not come back with a result:

- **The actor is gone or silent** (its process died, Ray lost it or its objects, the node
  went away, or the call passed its timeout): the actor is replaced in its bundle, the
  pool's `on_replace` hook brings the new one up to date (e.g. the current weights), and the
  same call is sent again, same arguments, so the same seeds give the same samples. A call
  is redone at most `max_restarts` times; replacements and redone prompts are counted per
  role in `Recovery`. It does not matter whether the actor died inside this call or at any
  moment before it: a call to a dead actor fails the same way.
- **The actor's own code raised** (a bug, bad data): redoing it would raise again, so the
  run stops at once with `ActorCodeError`, one line naming the role, the call and the error's
  last line.
- **A pool that cannot replace one member** (the learners, which hold one DeepSpeed group):
  any loss is `ActorFailed` at once; the run decides (driver/run.py rebuilds the group).

Failure messages are one line; the full Ray text goes to the driver's log (logs/driver.log).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import (ActorUnavailableError, GetTimeoutError, ObjectLostError, OutOfMemoryError, OwnerDiedError,
                            RayActorError, RayError, RayTaskError)

from rlaif_ray.errors import ActorCodeError, ActorFailed, last_line

log = logging.getLogger("rlaif_ray")

@dataclass
class CallPolicy:
    timeout_s: float = 600.0          # one call, from its submission
    max_restarts: int = 3             # replacements for the same call before the run stops
    startup_timeout_s: float = 900.0  # a replacement actor, until it answers

    @classmethod
    def of(cls, run) -> CallPolicy:
        """From a config's `run` section."""
        return cls(run.call_timeout_s, run.max_actor_restarts, run.startup_timeout_s)


@dataclass
class Recovery:
    """Replacements and redone prompts per role, shared by a run's pools."""
    restarts: dict[str, int] = field(default_factory=dict)
    redone_prompts: dict[str, int] = field(default_factory=dict)

    def count(self, role: str, prompts: int, restarted: bool = True) -> None:
        """A call of `role` covering `prompts` is redone; `restarted`: on an actor replaced for it."""
        self.restarts[role] = self.restarts.get(role, 0) + int(restarted)
        self.redone_prompts[role] = self.redone_prompts.get(role, 0) + prompts

    def metrics(self) -> dict[str, int]:
        row = {"recovery/actor_restarts": sum(self.restarts.values()),
               "recovery/redone_prompts": sum(self.redone_prompts.values())}
        for role in sorted(self.restarts):
            row[f"recovery/{role}/restarts"] = self.restarts[role]
            row[f"recovery/{role}/redone_prompts"] = self.redone_prompts[role]
        return row

    def state_dict(self) -> dict:
        return {"restarts": dict(self.restarts), "redone_prompts": dict(self.redone_prompts)}

    def load_state_dict(self, state: dict) -> None:
        self.restarts = dict(state.get("restarts", {}))
        self.redone_prompts = dict(state.get("redone_prompts", {}))


@dataclass(eq=False)
class Call:
    """One call to actor `i` of a pool; `refs` is the ObjectRef (or tuple of them, for a
    method with several returns) and `value` the fetched last return once `wait` is done."""
    i: int
    method: str
    args: tuple
    prompts: int                      # prompts this call's work covers (counted when redone)
    refs: Any = None
    deadline: float = 0.0
    attempts: int = 0
    value: Any = None
    sent_at: float = 0.0              # time.monotonic() of the last send
    done: bool = False                # its result came back (`value` is set)
    actor: Any = None                 # the handle it was last sent to

    @property
    def wait_ref(self):
        return self.refs[-1] if isinstance(self.refs, (list, tuple)) else self.refs


@dataclass
class Usage:
    """Where a pool's time went since `reset`: seconds its actors spent on calls (from a call's
    send, or the end of the actor's previous call or the reset if later, to its result
    reaching the driver) and seconds the driver spent waiting on them."""
    busy_s: float = 0.0
    waited_s: float = 0.0
    free_at: dict[int, float] = field(default_factory=dict)  # actor -> end of its last call
    since: float = 0.0   # time.monotonic() of the reset: a call sent before it counts from here

    def reset(self) -> None:
        self.busy_s, self.waited_s, self.free_at, self.since = 0.0, 0.0, {}, time.monotonic()

    def finished(self, call: Call, now: float) -> None:
        self.busy_s += max(0.0, now - max(call.sent_at, self.free_at.get(call.i, 0.0), self.since))
        self.free_at[call.i] = now


def is_actor_code_error(err: BaseException) -> bool:
    """True when the actor's own code raised; False when the actor (or an object it needed)
    was lost, which replacing the actor can fix."""
    if not isinstance(err, RayTaskError):
        return False
    return not isinstance(err.cause, RayError)  # e.g. it read an object whose owner died


def describe_loss(err: BaseException) -> str:
    """What happened to an actor, in a few words (Ray's own texts run to paragraphs)."""
    if isinstance(err, GetTimeoutError):
        return "gave no answer in time"
    if isinstance(err, OutOfMemoryError):
        return "was killed for memory (Ray's memory monitor)"
    if isinstance(err, ActorUnavailableError):
        return "became unreachable"
    if isinstance(err, RayActorError):
        return "died (its process exited)"
    if isinstance(err, (ObjectLostError, OwnerDiedError)):
        return f"lost an object it needed ({type(err).__name__})"
    return f"was lost ({last_line(err)})"


def log_full(name: str, method: str, err: BaseException) -> None:
    # The driver's stderr is logs/driver.log while the run's output is captured.
    print(f"[rlaif-ray] {name}.{method} failed:\n{err}", file=sys.stderr, flush=True)


def submit(pool, i: int, method: str, *args, prompts: int = 0, timeout_s: float | None = None) -> Call:
    call = Call(i, method, args, prompts)
    _send(pool, call, timeout_s)
    return call


def _send(pool, call: Call, timeout_s: float | None = None) -> None:
    call.actor = pool.actors[call.i]
    call.refs = getattr(call.actor, call.method).remote(*call.args)
    call.sent_at = time.monotonic()
    call.deadline = time.monotonic() + (timeout_s or pool.policy.timeout_s)


def wait(pool, calls: list[Call], timeout_s: float | None = None) -> list[Call]:
    """Wait for `calls` (all on `pool`), replacing lost actors and redoing their calls;
    returns the same calls, each with `value` set."""
    left = list(calls)
    while left:
        done = wait_first(pool, left, timeout_s)
        left = [c for c in left if c is not done]
    return calls


def wait_first(pool, calls: list[Call], timeout_s: float | None = None) -> Call:
    """The first of `calls` to come back with a result (`value` set); a call that fails on
    the way is redone on a fresh actor (or raises, per the policy above)."""
    return wait_any([(pool, c) for c in calls], timeout_s)[1]


def wait_any(pending: list[tuple[Any, Call]], timeout_s: float | None = None) -> tuple[Any, Call]:
    """Like `wait_first`, over calls to several pools: [(pool, call)] -> the first (pool, call)
    back with a result. The pipelined driver waits this way on training and generation at once."""
    by_ref = {c.wait_ref: (p, c) for p, c in pending}
    while True:
        earliest = min(c.deadline for _, c in by_ref.values())
        waiting = time.monotonic()
        ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=max(0.0, earliest - waiting))
        waited = time.monotonic() - waiting
        if ready:
            pool, call = by_ref.pop(ready[0])
            pool.usage.waited_s += waited
            try:
                call.value = ray.get(ready[0])
                call.done = True
                pool.usage.finished(call, time.monotonic())
                return pool, call
            except RayError as err:
                _recover(pool, call, err, timeout_s)
                by_ref[call.wait_ref] = (pool, call)
        else:
            by_ref[min(by_ref, key=lambda r: by_ref[r][1].deadline)][0].usage.waited_s += waited
        for ref in _late(by_ref):
            pool, call = by_ref.pop(ref)
            late = GetTimeoutError(f"no answer within {timeout_s or pool.policy.timeout_s:.0f} s")
            _recover(pool, call, late, timeout_s)
            by_ref[call.wait_ref] = (pool, call)


def _late(by_ref: dict) -> list:
    """The refs whose call is past its deadline and has not answered. A call that answered
    while the driver was busy elsewhere (replacing another pool member takes 20-30 s on 2
    cores) is not late, however long ago its deadline passed: its result is taken next."""
    now = time.monotonic()
    overdue = [ref for ref, (_, call) in by_ref.items() if call.deadline <= now]
    if not overdue:
        return []
    answered = set(ray.wait(overdue, num_returns=len(overdue), timeout=0)[0])
    return [ref for ref in overdue if ref not in answered]


def _recover(pool, call: Call, err: BaseException, timeout_s: float | None) -> None:
    """Replace the actor of a failed call and send the call again, or raise."""
    name = f"{pool.role}-{call.i}"
    what = f"{call.method}"
    if is_actor_code_error(err):
        log_full(name, call.method, err)
        lost = None if pool.replaceable else lost_member(pool)
        if lost is not None:
            # A group's collective fails on every member when one member dies: the death is
            # what happened, and the group is rebuilt, not stopped as for a bug.
            raise ActorFailed(lost, f"died during {what} (its group's collective failed on {name})") from None
        raise ActorCodeError(name, what, last_line(err)) from None
    cause = describe_loss(err)
    log_full(name, call.method, err)
    if not pool.replaceable:
        raise ActorFailed(name, f"{cause} during {what}") from None
    if call.actor is not pool.actors[call.i]:
        # Sent to an actor that another failed call has already replaced (several calls queue
        # on one actor in pipelined mode): redo it on the replacement, which is not to be
        # replaced in turn.
        log.warning("%s %s during %s; redoing the call on its replacement", name, cause, what)
        pool.recovery.count(pool.role, call.prompts, restarted=False)
        _send(pool, call, timeout_s)
        return
    while True:
        if call.attempts >= pool.policy.max_restarts:
            raise ActorFailed(name, f"{cause} during {what}; gave up after {call.attempts} replacements "
                                    f"for this call (run.max_actor_restarts)") from None
        call.attempts += 1
        log.warning("%s %s during %s; replacing it and redoing the call", name, cause, what)
        try:
            pool.replace(call.i)
            break
        except RayError as again:  # the replacement died while starting or catching up
            log_full(name, "start-up", again)
            cause = f"then its replacement {describe_loss(again)}"
    pool.recovery.count(pool.role, call.prompts)
    _send(pool, call, timeout_s)


# How long a member of a group gets to answer "are you alive" after a peer's collective failed.
PEER_CHECK_S = 10.0


def lost_member(pool) -> str | None:
    """The name of a member of `pool` whose process is gone, or None when all answer (a member
    busy past PEER_CHECK_S counts as alive)."""
    pings = [a.ping.remote() for a in pool.actors]
    for i, ref in enumerate(pings):
        try:
            ray.get(ref, timeout=PEER_CHECK_S)
        except GetTimeoutError:
            continue
        except RayError:
            return f"{pool.role}-{i}"
    return None


def map_calls(pool, method: str, args: list[tuple], prompts: list[int] | None = None,
              timeout_s: float | None = None) -> list[Call]:
    """Actor k runs `method(*args[k])`, all at once; waits for all (see `wait`)."""
    prompts = prompts or [0] * len(args)
    # Through pool.submit, so that a fault hook set on the pool (driver/chaos.py) sees every call.
    calls = [pool.submit(k, method, *a, prompts=n, timeout_s=timeout_s) for k, (a, n) in enumerate(zip(args, prompts))]
    return wait(pool, calls, timeout_s)
