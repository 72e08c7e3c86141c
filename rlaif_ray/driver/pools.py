"""Actor pools per role: placement groups from config, calls under one failure policy,
replacement on loss.

Every role reserves one placement-group bundle per actor from its `resources` (CPUs, GPUs,
custom resources), so the Ray autoscaler sees exactly what to launch and a replacement actor
lands in its predecessor's bundle. Every call the drivers make goes through `submit`/`wait`,
`map` or `call_all` (driver/calls.py holds the policy).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.cores import pin_to_cores, use_threads
from rlaif_ray.config import Resources
from rlaif_ray.driver import calls
from rlaif_ray.driver.calls import Call, CallPolicy, Recovery, Usage
from rlaif_ray.driver.logs import STREAM, RunLogs, redirect_output, set_up_first
from rlaif_ray.errors import ActorCodeError, ActorFailed

log = logging.getLogger("rlaif_ray")


def get_with_timeout(refs, timeout_s: float, actor: str, what: str):
    """`ray.get` of refs that belong to no pool call (e.g. start-up), with one-line errors."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except GetTimeoutError:
        raise ActorFailed(actor, f"{what} took longer than {timeout_s:.0f} s") from None
    except RayError as e:
        calls.log_full(actor, what, e)
        if calls.is_actor_code_error(e):
            raise ActorCodeError(actor, what, calls.last_line(e)) from None
        raise ActorFailed(actor, f"lost during {what}", e) from None


class ActorPool:
    """N actors of one role, one placement-group bundle each; actor i writes its output to
    `logs.actor_file("<role>-<i>")` (nothing redirected with `STREAM`).

    `replaceable`: a lost actor is replaced and its call redone (see driver/calls.py);
    False for a group whose members cannot be swapped one by one (the learners).
    `on_replace(actor, name)`: brings a replacement up to date (e.g. the current weights);
    Ray errors it raises count as the replacement being lost too.
    `fault(i, method)`: a fault injector (driver/chaos.py), asked before each call is sent;
    what it returns (if anything) strikes right after the call went out.
    """

    def __init__(self, role: str, cls: type, resources: Resources, count: int,
                 make_args: Callable[[int], tuple], env_vars: dict[str, str], ready_timeout_s: float,
                 logs: RunLogs = STREAM, policy: CallPolicy | None = None, replaceable: bool = True,
                 recovery: Recovery | None = None, threads: int | None = None):
        self.role, self.cls, self.resources, self.threads = role, cls, resources, threads
        self.make_args, self.env_vars, self.logs = make_args, env_vars, logs
        self.policy = policy or CallPolicy(startup_timeout_s=ready_timeout_s)
        self.replaceable = replaceable
        self.recovery = recovery or Recovery()
        self.on_replace: Callable[[Any, str], None] | None = None
        self.fault: Callable[[int, str], Callable[[], None] | None] | None = None
        self.usage = Usage()
        bundle = resources.as_bundle() or {"CPU": 0.01}
        self.pg = placement_group([dict(bundle) for _ in range(count)], strategy="PACK")
        try:
            ray.get(self.pg.ready(), timeout=ready_timeout_s)
        except GetTimeoutError:
            raise ActorFailed(role, f"could not reserve {count} × {bundle} within {ready_timeout_s:.0f} s: "
                              f"the cluster lacks these resources and the autoscaler (if any) did not add them") from None
        self.actors = [self._spawn(i) for i in range(count)]

    def names(self) -> list[str]:
        return [f"{self.role}-{i}" for i in range(len(self.actors))]

    def _spawn(self, i: int):
        r = self.resources
        opts: dict[str, Any] = dict(
            num_cpus=r.num_cpus, num_gpus=r.num_gpus, resources=dict(r.custom) or None,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
            runtime_env={"env_vars": dict(self.env_vars)}, max_restarts=0, max_task_retries=0)
        log_file = self.logs.actor_file(f"{self.role}-{i}")
        steps = [(redirect_output, (log_file,))] if log_file else []  # first: later errors reach the file
        steps += [(pin_to_cores, (list(r.cpu_affinity),))] if r.cpu_affinity else []
        steps += [(use_threads, (self.threads,))] if self.threads else []
        cls = set_up_first(self.cls, steps) if steps else self.cls
        return ray.remote(cls).options(**opts).remote(*self.make_args(i))

    def rebind(self, make_args: Callable[[int], tuple], logs: RunLogs, policy: CallPolicy,
               recovery: Recovery) -> list:
        """Serve another run with the actors held (driver/warm.py): each actor `reset`s with
        its new constructor arguments and writes to the new run's log file; the pool takes
        the run's call policy and recovery counts, and forgets the last run's replacement hook
        and fault injection. Returns the refs of the resets."""
        self.make_args, self.logs, self.policy, self.recovery = make_args, logs, policy, recovery
        self.on_replace, self.fault, self.usage = None, None, Usage()
        resets = []
        for i, actor in enumerate(self.actors):
            log_file = logs.actor_file(f"{self.role}-{i}")
            if log_file:  # before the reset, so what it prints lands in this run's file
                actor.__ray_call__.remote(lambda _self, path: redirect_output(path), log_file)
            resets.append(actor.reset.remote(*make_args(i)))
        return resets

    def wait_ready(self, timeout_s: float) -> None:
        for i, a in enumerate(self.actors):
            get_with_timeout(a.ping.remote(), timeout_s, f"{self.role}-{i}", "start-up")

    @property
    def restarts(self) -> int:
        return self.recovery.restarts.get(self.role, 0)

    def replace(self, i: int):
        """Kill actor i (if it still runs), start a fresh one in its bundle, wait until it
        answers and bring it up to date (`on_replace`). Raises Ray's error if that fails."""
        _kill(self.actors[i])
        name = f"{self.role}-{i}"
        log_file = self.logs.actor_file(name)
        if log_file:
            log.info("%s: a fresh actor appends to %s", name, log_file)
        self.actors[i] = self._spawn(i)
        ray.get(self.actors[i].ping.remote(), timeout=self.policy.startup_timeout_s)
        if self.on_replace is not None:
            self.on_replace(self.actors[i], name)
        return self.actors[i]

    # The calls (one policy: driver/calls.py).
    def submit(self, i: int, method: str, *args, prompts: int = 0, timeout_s: float | None = None) -> Call:
        strike = self.fault(i, method) if self.fault else None
        call = calls.submit(self, i, method, *args, prompts=prompts, timeout_s=timeout_s)
        if strike:
            strike()
        return call

    def wait(self, pending: list[Call], timeout_s: float | None = None) -> list[Call]:
        return calls.wait(self, pending, timeout_s)

    def wait_first(self, pending: list[Call], timeout_s: float | None = None) -> Call:
        return calls.wait_first(self, pending, timeout_s)

    def map(self, method: str, args: list[tuple], prompts: list[int] | None = None,
            timeout_s: float | None = None) -> list[Call]:
        """Actor k runs `method(*args[k])` (k < len(args)), concurrently."""
        return calls.map_calls(self, method, args, prompts, timeout_s)

    def call_all(self, method: str, *args, timeout_s: float | None = None) -> list:
        """Every actor runs `method(*args)`; returns each one's (last) return value."""
        return [c.value for c in self.map(method, [args] * len(self.actors), timeout_s=timeout_s)]

    def call(self, i: int, method: str, *args, prompts: int = 0, timeout_s: float | None = None):
        """Actor i runs `method(*args)`; returns its (last) return value."""
        return self.wait([self.submit(i, method, *args, prompts=prompts, timeout_s=timeout_s)], timeout_s)[0].value

    def shutdown(self) -> None:
        for a in self.actors:
            _kill(a)
        try:
            remove_placement_group(self.pg)
        except RayError as err:  # the cluster is going down with it
            log.info("placement group of %s not removed: %s", self.role, calls.last_line(err))


def _kill(actor) -> None:
    """Stop an actor for good; one that is already gone is fine."""
    try:
        ray.kill(actor, no_restart=True)
    except (RayActorError, ValueError):
        pass


def describe_roles(counts: list[tuple[str, int]]) -> str:
    """"rollout ×2, labeler ×1" from [(role, actors)]."""
    return ", ".join(f"{role} ×{n}" for role, n in counts)


def wait_all_ready(pools: list[ActorPool], timeout_s: float, logs: RunLogs, started_at: float,
                   also: dict[str, list] | None = None) -> dict[str, float]:
    """Wait until every actor of every pool answers (and the refs in `also[role]`, e.g. the
    learners' DeepSpeed set-up, are done), within one start-up deadline; then say on the
    terminal how long each role took from `started_at`. Returns {role: seconds}.

    The pools build concurrently, so each role's time is when its last actor came up.
    """
    pending: dict = {}  # ObjectRef -> (role, actor name for errors)
    for pool in pools:
        for i, a in enumerate(pool.actors):
            pending[a.ping.remote()] = (pool.role, f"{pool.role}-{i}")
    for role, refs in (also or {}).items():
        pending.update({r: (role, role) for r in refs})
    ready_s: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            slow = sorted({name for _, name in pending.values()})
            raise ActorFailed(", ".join(slow), f"start-up took longer than {timeout_s:.0f} s (run.startup_timeout_s)")
        role, name = pending.pop(done[0])
        try:
            ray.get(done[0])
        except RayError as e:
            calls.log_full(name, "start-up", e)
            raise ActorFailed(name, "died during start-up", e) from None
        ready_s[role] = time.perf_counter() - started_at
    logs.say("ready: " + ", ".join(f"{p.role}{f' ×{len(p.actors)}' if len(p.actors) > 1 else ''} "
                                   f"({ready_s.get(p.role, 0.0):.1f} s)" for p in pools))
    return ready_s
