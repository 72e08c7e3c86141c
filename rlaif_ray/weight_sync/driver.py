"""The driver end of weight sync: one push per PPO iteration, time-boxed.

`WeightSync` is the interface the driver's stages use. Each backend's driver end calls its
sender (on the learner ranks, through `LearnerWorker.weight_sender`) and its receiver (on
the rollout engines, through `RolloutActor.weight_receiver`); every wait is bounded by
`sync.timeout_s` and an error names the actor that was late or died.
"""

from __future__ import annotations

import time
from typing import Protocol

import ray

from rlaif_ray.config import SyncSection
from rlaif_ray.driver.pools import ActorPool, get_with_timeout
from rlaif_ray.errors import ActorFailed
from rlaif_ray.weight_sync.nccl import group_layout


class WeightSync(Protocol):
    def push(self, learners: ActorPool, rollout: ActorPool, version: int) -> dict:
        """Make every rollout engine serve the learner's current weights as `version`."""

    def load_latest(self, actor, name: str) -> None:
        """Bring one (replacement) rollout actor to the newest weights; raises Ray's error."""


class ObjectStoreSync:
    """Learner rank 0 puts the buckets once (every rank takes part under ZeRO-3); every
    engine loads all of them. The newest payload stays referenced for replacement actors."""

    def __init__(self, cfg: SyncSection):
        self.cfg = cfg
        self.latest = None   # object_store.Payload of the newest weights
        self.latest_version = 0

    def push(self, learners: ActorPool, rollout: ActorPool, version: int) -> dict:
        start = time.perf_counter()
        self.latest = learners.call_all("weight_sender", "put", timeout_s=self.cfg.timeout_s)[0]
        self.latest_version = version
        gathered = time.perf_counter() - start
        # A rollout actor lost now (or since its last call) is replaced, loads self.latest, and loads again.
        rollout.map("weight_receiver", [("load", self.latest, version)] * len(rollout.actors), timeout_s=self.cfg.timeout_s)
        return {"sync/seconds_gather": gathered, "sync/buckets": len(self.latest)}

    def load_latest(self, actor, name: str) -> None:
        if self.latest is not None:
            ray.get(actor.weight_receiver.remote("load", self.latest, self.latest_version), timeout=self.cfg.timeout_s)


class NcclSync:
    """Broadcast from learner rank 0 to every vLLM worker over one NCCL group (GPU).

    The group (`weight_sync.nccl`) is formed lazily on the first push, when every actor
    exists, and again whenever the rollout actors changed (a replacement holds no rank in the
    old group). The bucket plan is made once: learner-0's metadata goes to every engine
    through the object store, each side builds the plan and the fingerprints must agree. A
    failed or late push drops the group, so the next push forms a fresh one instead of
    reusing a communicator left mid-broadcast.
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
            sends = [l.weight_sender.remote("broadcast") for l in learners]
            loads = [r.weight_receiver.remote("receive", self.fingerprint, version, self.cfg.timeout_s) for r in rollouts]
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
        timeout, bucket_bytes = self.cfg.timeout_s, self.cfg.bucket_mib * 2**20
        meta = learners[0].weight_sender.remote("metadata")   # one small object; engines read it
        workers = [get_with_timeout(r.weight_receiver.remote("workers"), self._left(start), n, "weight group size")
                   for r, n in zip(rollouts, names)]
        layout = group_layout(workers)
        addr, port = get_with_timeout(learners[0].rendezvous_address.remote(), self._left(start),
                                      "learner-0", "weight group address")
        opened = learners[0].weight_sender.remote("open", addr, port, layout.world_size, timeout)
        joins = [r.weight_receiver.remote("join", addr, port, off, layout.world_size, timeout, meta, bucket_bytes)
                 for r, off in zip(rollouts, layout.rank_offsets)]
        self.fingerprint = get_with_timeout(opened, self._left(start), "learner-0", "NCCL weight group set-up")
        for name, ref in zip(names, joins):
            got = get_with_timeout(ref, self._left(start), name, "NCCL weight group set-up")
            if got != self.fingerprint:
                raise RuntimeError(f"{name}: bucket plan {got} differs from learner-0's {self.fingerprint}")
        self.members = list(rollouts)
        return time.perf_counter() - t0

    def _left(self, start: float) -> float:
        return max(self.cfg.timeout_s - (time.perf_counter() - start), 1.0)

    def load_latest(self, actor, name: str) -> None:
        """A replacement rollout actor gets the learner's weights through the object store (it
        has no rank in the group yet); the next push re-forms the group with it."""
        self.members = None
        if self.latest_version and self.learners:
            payloads = ray.get([l.weight_sender.remote("put") for l in self.learners], timeout=self.cfg.timeout_s)
            ray.get(actor.weight_receiver.remote("load", payloads[0], self.latest_version), timeout=self.cfg.timeout_s)


def make_weight_sync(cfg: SyncSection, rollout: ActorPool | None = None) -> WeightSync:
    """The configured backend's driver end; given the rollout pool, its replacement actors
    start from the newest weights."""
    sync = ObjectStoreSync(cfg) if cfg.backend == "object_store" else NcclSync(cfg)
    if rollout is not None:
        rollout.on_replace = sync.load_latest
    return sync
