"""Fault injection from `chaos.faults`, installed as each pool's `fault` hook (driver/pools.py):
the actors and the stages know nothing of it, and the recovery under test is the real one.

A fault strikes actor `actor` of `role` at its first call during iteration `iteration`, by
signal to the actor's process, the way the outside world hits a process:

    kill   SIGKILL right after the call was sent (the OOM killer, a lost node)
    stall  SIGSTOP for `stall_s`, then SIGCONT (a wedged process; the call passes its timeout)

Signals go by PID, so faults reach actors on the driver's node (local mode, where the
recovery tests run).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable

import ray

log = logging.getLogger("rlaif_ray")


def actor_pid(actor) -> int:
    """The PID of an actor's process (asked before any call is queued on it)."""
    return ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()))


class Chaos:
    def __init__(self, faults: list, iteration: Callable[[], int]):
        self.faults = list(faults)
        self.iteration = iteration  # the iteration now running, 1-based
        self.fired: set[int] = set()

    def install(self, pool) -> None:
        """Set `pool.fault` if a fault names its role (also for a rebuilt pool)."""
        mine = [k for k, f in enumerate(self.faults) if f.role == pool.role]
        if not mine:
            return

        def fault(i: int, method: str) -> Callable[[], None] | None:
            due = [k for k in mine if self.faults[k].actor == i and self.faults[k].iteration == self.iteration()
                   and k not in self.fired]
            if not due:
                return None
            pid = actor_pid(pool.actors[i])  # before the call is queued on the actor
            self.fired.update(due)

            def strike_due() -> None:
                for k in due:
                    strike(pid, self.faults[k], f"{pool.role}-{i}", method)
            return strike_due

        pool.fault = fault


def strike(pid: int, fault, name: str, method: str) -> None:
    log.info("chaos: %s of %s (pid %d) during %s", fault.kind, name, pid, method)
    if fault.kind == "kill":
        os.kill(pid, signal.SIGKILL)
        return
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(fault.stall_s, _resume, args=(pid,))
    timer.daemon = True
    timer.start()


def _resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:  # replaced (killed) meanwhile
        pass


def install(roles, faults: list, iteration: Callable[[], int]) -> Chaos | None:
    """Install `faults` on every pool of `roles`; None when there are none."""
    if not faults:
        return None
    chaos = Chaos(faults, iteration)
    for pool in roles.all():
        chaos.install(pool)
    return chaos
