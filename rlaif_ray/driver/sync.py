"""Weight sync: the learner's new policy reaches every rollout engine, time-boxed.

`WeightSync` is the interface; `ObjectStoreSync` works on CPU and across nodes:
learner rank 0 gathers the full weights (all ranks take part under ZeRO-3) into buckets of
`bucket_mib`, puts each bucket into the object store once, and every rollout actor loads
all buckets into its live vLLM engine and resets its prefix cache.
"""

from __future__ import annotations

import time
from typing import Protocol

import ray

from rlaif_ray.config import SyncSection
from rlaif_ray.driver.pools import get_with_timeout


class WeightSync(Protocol):
    def push(self, learners: list, rollouts: list, rollout_names: list[str], version: int) -> dict:
        """Make every rollout engine serve the learner's current weights as `version`."""


class ObjectStoreSync:
    def __init__(self, cfg: SyncSection):
        self.cfg = cfg
        self.latest: list = []   # bucket refs of the newest weights (for replacement actors)
        self.latest_version = 0

    def push(self, learners: list, rollouts: list, rollout_names: list[str], version: int) -> dict:
        start = time.perf_counter()
        per_rank = get_with_timeout([l.put_weight_buckets.remote(self.cfg.bucket_mib) for l in learners],
                                    self.cfg.timeout_s, "learner-0", "weight gather")
        self.latest, self.latest_version = per_rank[0], version
        gathered = time.perf_counter() - start
        loads = [r.load_weights.remote(self.latest, version) for r in rollouts]
        for name, ref in zip(rollout_names, loads):
            get_with_timeout(ref, max(self.cfg.timeout_s - (time.perf_counter() - start), 1.0), name, "weight load")
        return {"sync/seconds_gather": gathered, "sync/buckets": len(self.latest)}

    def load_latest(self, rollout, name: str) -> None:
        """Bring one (replacement) rollout actor to the newest weights."""
        if self.latest:
            get_with_timeout(rollout.load_weights.remote(self.latest, self.latest_version),
                             self.cfg.timeout_s, name, "weight load")


def make_weight_sync(cfg: SyncSection) -> WeightSync:
    if cfg.backend == "object_store":
        return ObjectStoreSync(cfg)
    raise NotImplementedError(
        "sync.backend: nccl is not implemented yet; use object_store (works on GPUs too, slower)")
