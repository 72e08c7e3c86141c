"""Weight sync: the learner's new policy reaches every rollout engine, time-boxed.

`WeightSync` is the interface; `ObjectStoreSync` works on CPU and across nodes:
learner rank 0 gathers the full weights (all ranks take part under ZeRO-3) into buckets of
`bucket_mib`, puts each bucket into the object store once, and every rollout actor loads
all buckets into its live vLLM engine and resets its prefix cache. `NcclSync` (GPU)
broadcasts the same buckets from learner rank 0 to every vLLM worker (docs/weight-sync.md).
"""

from __future__ import annotations

import time
from typing import Protocol

import ray

from rlaif_ray.config import SyncSection
from rlaif_ray.driver.pools import ActorPool, get_with_timeout
from rlaif_ray.errors import ActorFailed
from rlaif_ray.nccl_plan import group_layout


class WeightSync(Protocol):
    def push(self, learners: ActorPool, rollout: ActorPool, version: int) -> dict:
        """Make every rollout engine serve the learner's current weights as `version`."""

    def load_latest(self, actor, name: str) -> None:
        """Bring one (replacement) rollout actor to the newest weights; raises Ray's error."""


class ObjectStoreSync:
    def __init__(self, cfg: SyncSection):
        self.cfg = cfg
        self.latest: list = []   # bucket refs of the newest weights (for replacement actors)
        self.latest_version = 0

    def push(self, learners: ActorPool, rollout: ActorPool, version: int) -> dict:
        start = time.perf_counter()
        self.latest = learners.call_all("put_weight_buckets", self.cfg.bucket_mib, timeout_s=self.cfg.timeout_s)[0]
        self.latest_version = version
        gathered = time.perf_counter() - start
        # A rollout actor lost now (or since its last call) is replaced, loads self.latest, and loads again.
        rollout.map("load_weights", [(self.latest, version)] * len(rollout.actors), timeout_s=self.cfg.timeout_s)
        return {"sync/seconds_gather": gathered, "sync/buckets": len(self.latest)}

    def load_latest(self, actor, name: str) -> None:
        if self.latest:
            ray.get(actor.load_weights.remote(self.latest, self.latest_version), timeout=self.cfg.timeout_s)


class NcclSync:
    """Broadcast from learner rank 0 to every vLLM worker over one NCCL group (GPU).

    The group (rank 0 = learner-0, then each engine's TP workers; `rlaif_ray.nccl_plan`) is
    formed lazily on the first push, when every actor exists, and again whenever the rollout
    actors changed (a replacement holds no rank in the old group). The bucket plan is made
    once: learner-0's metadata goes to every engine through the object store, each side builds
    the plan and the fingerprints must agree. Every wait is bounded by `timeout_s`; a failed
    or late push drops the group, so the next push forms a fresh one instead of reusing a
    communicator left mid-broadcast.
    """

    def __init__(self, cfg: SyncSection):
        self.cfg = cfg
        self.members: list | None = None   # rollout handles the current group was formed with
        self.fingerprint = ""
        self.learners: list = []
        self.latest_version = 0

    def push(self, learners: ActorPool, rollout: ActorPool, version: int) -> dict:
        """A rollout actor lost during the push is replaced (it loads the newest weights through
        the object store) and the push is tried once more with a freshly formed group."""
        try:
            return self._push(learners.actors, rollout.actors, rollout.names(), version)
        except ActorFailed as err:
            if err.actor.startswith("learner"):
                raise
            for i in range(len(rollout.actors)):
                rollout.call(i, "ping", timeout_s=self.cfg.timeout_s)  # replaces the lost ones
            return self._push(learners.actors, rollout.actors, rollout.names(), version)

    def _push(self, learners: list, rollouts: list, rollout_names: list[str], version: int) -> dict:
        start = time.perf_counter()
        self.learners = list(learners)
        formed = 0.0
        try:
            if self.members != list(rollouts):
                formed = self._form_group(learners, rollouts, rollout_names, start)
            sends = [l.broadcast_weights.remote(self.cfg.bucket_mib) for l in learners]
            loads = [r.receive_weights.remote(self.fingerprint, version, self.cfg.timeout_s) for r in rollouts]
            for name, ref in zip(rollout_names, loads):
                get_with_timeout(ref, self._left(start), name, "NCCL weight receive")
            sent = get_with_timeout(sends, self._left(start), "learner-0", "NCCL weight broadcast")[0]
        except BaseException:
            self.members = None
            raise
        self.latest_version = version
        return {"sync/seconds_group": formed, "sync/seconds_broadcast": sent["seconds"],
                "sync/buckets": sent["buckets"], "sync/bytes": sent["bytes"]}

    def _form_group(self, learners, rollouts, names, start) -> float:
        t0 = time.perf_counter()
        self.members = None
        timeout = self.cfg.timeout_s
        meta = learners[0].weight_metadata.remote()   # one small object; engines read it
        workers = [get_with_timeout(r.weight_group_workers.remote(), self._left(start), n, "weight group size")
                   for r, n in zip(rollouts, names)]
        layout = group_layout(workers)
        addr, port = get_with_timeout(learners[0].rendezvous_address.remote(), self._left(start),
                                      "learner-0", "weight group address")
        sender = learners[0].init_weight_group.remote(addr, port, layout.world_size, timeout, self.cfg.bucket_mib)
        joins = [r.init_weight_group.remote(addr, port, off, layout.world_size, timeout, meta, self.cfg.bucket_mib)
                 for r, off in zip(rollouts, layout.rank_offsets)]
        self.fingerprint = get_with_timeout(sender, self._left(start), "learner-0", "NCCL weight group set-up")
        for name, ref in zip(names, joins):
            got = get_with_timeout(ref, self._left(start), name, "NCCL weight group set-up")
            if got != self.fingerprint:
                raise RuntimeError(f"{name}: bucket plan {got} differs from learner-0's {self.fingerprint}")
        self.members = list(rollouts)
        return time.perf_counter() - t0

    def _left(self, start: float) -> float:
        return max(self.cfg.timeout_s - (time.perf_counter() - start), 1.0)

    def load_latest(self, actor, name: str) -> None:
        """A replacement rollout actor gets the newest weights through the object store (it has
        no rank in the group yet); the next push re-forms the group with it."""
        self.members = None
        if self.latest_version and self.learners:
            per_rank = ray.get([l.put_weight_buckets.remote(self.cfg.bucket_mib) for l in self.learners],
                               timeout=self.cfg.timeout_s)
            ray.get(actor.load_weights.remote(per_rank[0], self.latest_version), timeout=self.cfg.timeout_s)


def make_weight_sync(cfg: SyncSection, rollout: ActorPool | None = None) -> WeightSync:
    """The configured backend; given the rollout pool, its replacement actors start from the
    newest weights."""
    sync = ObjectStoreSync(cfg) if cfg.backend == "object_store" else NcclSync(cfg)
    if rollout is not None:
        rollout.on_replace = sync.load_latest
    return sync
