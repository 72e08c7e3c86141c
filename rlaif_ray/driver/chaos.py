"""Fault injection from `chaos.faults`: kill or stall a given actor during a given iteration.

Faults are injected from the driver, the way a lost node or a wedged process looks to it:
a kill is `ray.kill` right after the call was sent; a stall is a `stall` call queued before
it, so the actor stops answering. The recovery code under test is the real one.
"""

from __future__ import annotations

import ray


def _faults(run, role: str, kind: str):
    return [f for f in run.cfg.chaos.faults
            if f.role == role and f.kind == kind and f.iteration == run.iteration + 1
            and (role, f.actor, f.iteration) not in run.fired_faults]


def stall_before_call(run, role: str, pool) -> None:
    for f in _faults(run, role, "stall"):
        run.fired_faults.add((role, f.actor, f.iteration))
        pool.actors[f.actor].stall.remote(f.stall_s)


def kill_after_call(run, role: str, pool) -> None:
    for f in _faults(run, role, "kill"):
        run.fired_faults.add((role, f.actor, f.iteration))
        ray.kill(pool.actors[f.actor], no_restart=True)
