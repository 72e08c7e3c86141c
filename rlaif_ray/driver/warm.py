"""Started roles kept between the runs of one driver: a sweep, a notebook, a test session.

Starting a run's roles costs ~25 s on 2 cores (each actor imports and builds its engine),
and the runs of a sweep mostly start the same roles again. `WarmRoles` keeps a run's pools
when it ends well; the next run takes every kept pool whose actors it would build the same
way and `reset`s them instead of starting new ones. Pools it does not take are shut down
before it starts any, so kept pools never hold the cores or memory a run needs.

"The same way" is the pool's key: role, actor class, count, resources, threads, and each
actor's `reuse_key(*constructor args)`, the part of the config a reset cannot change (an
engine's model, dtype, context and KV cache; the reference's model; the learner group's size
and backend). Everything else the actor reads from the config it gets again in `reset`. A
class without `reuse_key`, or an actor whose key is None, is never kept.

What a run must do with a kept pool: the rollout engines still serve the last run's
weights, so train_run pushes its fresh learners' weights (version 0) before iteration 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Callable

import ray
from ray.exceptions import RayError

from rlaif_ray.config import Resources
from rlaif_ray.driver.pools import ActorPool

log = logging.getLogger("rlaif_ray")
PING_TIMEOUT_S = 10.0  # an idle actor answers in milliseconds; one that does not is not kept


def require_outer_session(warm: WarmRoles | None) -> None:
    """Kept roles live in a Ray session that outlives the run: refuse `warm` without one."""
    if warm is not None and not ray.is_initialized():
        raise ValueError("warm roles need a Ray session that outlives the run: start Ray first "
                         "(rlaif_ray.driver.runtime.ray_session)")


def pool_key(role: str, cls: type, resources: Resources, count: int, make_args: Callable[[int], tuple],
             threads: int | None) -> Hashable | None:
    """The key under which a pool of these actors is kept; None when it cannot be."""
    reuse_key = getattr(cls, "reuse_key", None)
    if reuse_key is None:
        return None
    keys = tuple(reuse_key(*make_args(i)) for i in range(count))
    if any(k is None for k in keys):
        return None
    return role, cls.__name__, json.dumps(resources.model_dump(mode="json"), sort_keys=True), count, threads, keys


@dataclass
class WarmRoles:
    """Pools kept from earlier runs, by `pool_key`. Live within one Ray session: shut it down
    (`shutdown`) before that session ends."""

    kept: dict[Hashable, ActorPool] = field(default_factory=dict)

    def claim(self, keys: list[Hashable | None]) -> dict[Hashable, ActorPool]:
        """The kept pools a run will use (by key), each with every actor alive; every other
        kept pool (and one that lost an actor while idle) is shut down now."""
        taken = {k: self.kept.pop(k) for k in keys if k is not None and k in self.kept}
        self.shutdown()
        for key, pool in list(taken.items()):
            if not _answers(pool):
                log.warning("%s: an actor kept from the last run is gone; starting the role anew", pool.role)
                pool.shutdown()
                del taken[key]
        return taken

    def keep(self, pools: list[tuple[Hashable | None, ActorPool]]) -> None:
        """Keep a finished run's (key, pool)s for the next run; those without a key are shut down."""
        for key, pool in pools:
            if key is None or key in self.kept:
                pool.shutdown()
            else:
                self.kept[key] = pool

    def shutdown(self) -> None:
        for pool in self.kept.values():
            pool.shutdown()
        self.kept.clear()


def _answers(pool: ActorPool) -> bool:
    try:
        ray.get([a.ping.remote() for a in pool.actors], timeout=PING_TIMEOUT_S)
    except RayError:  # GetTimeoutError is one
        return False
    return True
