"""Actor pools per role: placement groups from config, time-boxed calls, replacement on death.

Every role reserves one placement-group bundle per actor from its `resources` (CPUs, GPUs,
custom resources), so the Ray autoscaler sees exactly what to launch and a replacement actor
lands in its predecessor's bundle.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlaif_ray.config import Resources
from rlaif_ray.driver.logs import STREAM, RunLogs, with_output_to
from rlaif_ray.run_dir import ActorFailed

log = logging.getLogger("rlaif_ray")


def get_with_timeout(refs, timeout_s: float, actor: str, what: str):
    """`ray.get` that raises `ActorFailed` naming the actor instead of hanging or dumping a trace."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except GetTimeoutError as e:
        raise ActorFailed(actor, f"{what} took longer than {timeout_s:.0f} s", e) from None
    except RayActorError as e:
        raise ActorFailed(actor, f"died during {what}", e) from None


class ActorPool:
    """N actors of one role, one placement-group bundle each; actor i writes its output to
    `logs.actor_file("<role>-<i>")` (nothing redirected with `STREAM`)."""

    def __init__(self, role: str, cls: type, resources: Resources, count: int,
                 make_args: Callable[[int], tuple], env_vars: dict[str, str], ready_timeout_s: float,
                 logs: RunLogs = STREAM):
        self.role, self.cls, self.resources = role, cls, resources
        self.make_args, self.env_vars, self.logs = make_args, env_vars, logs
        bundle = resources.as_bundle() or {"CPU": 0.01}
        self.pg = placement_group([dict(bundle) for _ in range(count)], strategy="PACK")
        try:
            ray.get(self.pg.ready(), timeout=ready_timeout_s)
        except GetTimeoutError:
            raise ActorFailed(role, f"could not reserve {count} × {bundle} within {ready_timeout_s:.0f} s: "
                              f"the cluster lacks these resources and the autoscaler (if any) did not add them") from None
        self.actors = [self._spawn(i) for i in range(count)]
        self.restarts = 0

    def names(self) -> list[str]:
        return [f"{self.role}-{i}" for i in range(len(self.actors))]

    def _spawn(self, i: int):
        r = self.resources
        opts: dict[str, Any] = dict(
            num_cpus=r.num_cpus, num_gpus=r.num_gpus, resources=dict(r.custom) or None,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
            runtime_env={"env_vars": dict(self.env_vars)}, max_restarts=0, max_task_retries=0)
        log_file = self.logs.actor_file(f"{self.role}-{i}")
        cls = with_output_to(self.cls, log_file) if log_file else self.cls
        return ray.remote(cls).options(**opts).remote(*self.make_args(i))

    def wait_ready(self, timeout_s: float) -> None:
        for i, a in enumerate(self.actors):
            get_with_timeout(a.ping.remote(), timeout_s, f"{self.role}-{i}", "start-up")

    def replace(self, i: int, timeout_s: float):
        """Kill actor i (if still alive) and start a fresh one in its bundle."""
        try:
            ray.kill(self.actors[i], no_restart=True)
        except Exception:  # already gone
            pass
        self.restarts += 1
        log_file = self.logs.actor_file(f"{self.role}-{i}")
        log.warning("replacing %s-%d (restart %d)%s", self.role, i, self.restarts,
                    f"; its output so far: {log_file}" if log_file else "")
        self.actors[i] = self._spawn(i)
        get_with_timeout(self.actors[i].ping.remote(), timeout_s, f"{self.role}-{i}", "start-up")
        return self.actors[i]

    def shutdown(self) -> None:
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        try:
            remove_placement_group(self.pg)
        except Exception:
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
        except RayActorError as e:
            raise ActorFailed(name, "died during start-up", e) from None
        ready_s[role] = time.perf_counter() - started_at
    logs.say("ready: " + ", ".join(f"{p.role}{f' ×{len(p.actors)}' if len(p.actors) > 1 else ''} "
                                   f"({ready_s.get(p.role, 0.0):.1f} s)" for p in pools))
    return ready_s
