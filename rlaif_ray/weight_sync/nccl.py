"""NCCL backend: learner rank 0 broadcasts each bucket to every vLLM worker (GPU).

Group (one communicator per run, formed by the driver end, `weight_sync.driver.NcclSync`):

    rank 0                      learner rank 0 (the only sender)
    ranks 1 .. N                every vLLM worker of every rollout engine; engine e owns the
                                contiguous ranks offset_e .. offset_e + workers_e - 1, where
                                workers_e = tensor_parallel × pipeline_parallel of engine e
    world_size = 1 + Σ_e workers_e

The receiving code runs inside each vLLM worker: `WeightGroupExtension` is mixed into every
worker through the engine arg `worker_extension_cls` (vLLM adds it to the worker's bases),
so `llm.collective_rpc` reaches it on each tensor-parallel worker.

Transport: NCCL (vLLM's `PyNcclCommunicator` over a `StatelessProcessGroup`, which leaves
torch.distributed's global group, the learners' DeepSpeed group, alone) when the tensors
live on CUDA. On CPU the same group runs over gloo on the same TCP store: the config only
allows `sync.backend: nccl` with GPUs, so gloo exists to test everything but the NCCL calls
themselves on machines without one.

A replacement engine holds no rank in the group yet: it is brought up to the newest weights
through the object store (`NcclReceiver` is an `ObjectStoreReceiver` too), and the next push
forms a fresh group with it.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from rlaif_ray.weight_sync.ends import learner_buckets, learner_metadata
from rlaif_ray.weight_sync.format import (BucketPlan, PlanError, WeightMetadata, as_bytes, build_plan,
                                          empty_bucket, pack_bucket, unpack_bucket, with_tied_head)
from rlaif_ray.weight_sync.object_store import ObjectStoreReceiver, ObjectStoreSender

WORKER_EXTENSION = "rlaif_ray.weight_sync.nccl.WeightGroupExtension"  # the qualname vLLM resolves


@dataclass(frozen=True)
class GroupLayout:
    world_size: int
    rank_offsets: tuple[int, ...]   # first group rank of each engine's workers
    workers: tuple[int, ...]        # vLLM workers per engine (TP × PP)

    def ranks_of(self, engine: int) -> list[int]:
        return list(range(self.rank_offsets[engine], self.rank_offsets[engine] + self.workers[engine]))


def group_layout(workers_per_engine: Sequence[int]) -> GroupLayout:
    """Rank 0 = learner rank 0; then each engine's workers, engines in pool order."""
    if not workers_per_engine:
        raise PlanError("the weight group needs at least one rollout engine")
    offsets, nxt = [], 1
    for e, w in enumerate(workers_per_engine):
        if not isinstance(w, int) or w < 1:
            raise PlanError(f"rollout engine {e}: {w!r} vLLM workers, expected an int ≥ 1")
        offsets.append(nxt)
        nxt += w
    return GroupLayout(nxt, tuple(offsets), tuple(workers_per_engine))


class WeightGroup:
    """This process's member of the weight group; rank 0 sends, every other rank receives."""

    def __init__(self, master_address: str, master_port: int, rank: int, world_size: int,
                 timeout_s: float, device: torch.device):
        from vllm.distributed.utils import StatelessProcessGroup

        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        # The store timeout bounds the rendezvous: rank 0 waits at most this long for every
        # worker to connect, and a worker at most this long for rank 0's NCCL unique id.
        self.pg = StatelessProcessGroup.create(host=master_address, port=master_port, rank=rank,
                                               world_size=world_size, store_timeout=int(max(timeout_s, 1)))
        self.nccl = self.gloo = None
        if self.device.type == "cuda":
            from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
            from vllm.utils.nccl import unpinned_nccl_env

            # vLLM pins NCCL_* variables for its own communicators; a communicator shared with
            # another process (the learner) must be created without them, or it hangs.
            with unpinned_nccl_env():
                self.nccl = PyNcclCommunicator(self.pg, device=self.device)
            if self.nccl.disabled:
                raise RuntimeError(f"weight group rank {rank}: NCCL could not be loaded on {self.device}")
        else:
            import torch.distributed as dist

            store = dist.PrefixStore("rlaif-weight-gloo", self.pg.store)
            self.gloo = dist.ProcessGroupGloo(store, rank, world_size, datetime.timedelta(seconds=timeout_s))

    def broadcast(self, flat: torch.Tensor) -> None:
        """In place: rank 0's `flat` overwrites every other rank's (same shape and dtype)."""
        wire = as_bytes(flat)
        if self.nccl is not None:
            self.nccl.broadcast(wire, src=0)
        else:
            import torch.distributed as dist

            opts = dist.BroadcastOptions()
            opts.rootRank = 0
            self.gloo.broadcast([wire], opts).wait()

    def synchronize(self) -> None:
        if self.nccl is not None:
            torch.cuda.current_stream(self.device).synchronize()

    def close(self) -> None:
        if self.nccl is not None:
            self.nccl.destroy()   # ncclCommAbort: safe when peers are already gone
        self.nccl = self.gloo = None


def receive_tensors(group: WeightGroup, plan: BucketPlan) -> Iterator[tuple[str, torch.Tensor]]:
    """Receive the plan's buckets one by one, yielding (name, view) as each arrives.

    Lazy on purpose: vLLM's loader consumes the iterator as it loads, so the receiver holds
    one bucket (plus the layer vLLM is assembling) instead of a second copy of the model.
    """
    for bucket in plan.buckets:
        flat = empty_bucket(bucket, group.device)
        group.broadcast(flat)
        yield from unpack_bucket(bucket, flat)


# ----------------------------------------------------------------------------- learner end


class NcclSender(ObjectStoreSender):
    """One learner rank's end: rank 0 holds rank 0 of the group; every rank takes part in
    the ZeRO-3 gathers. `put` (inherited) serves replacement engines."""

    def __init__(self, module: torch.nn.Module, bucket_bytes: int, zero_stage: int, rank: int):
        super().__init__(module, bucket_bytes, zero_stage, rank)
        self.group: WeightGroup | None = None

    def metadata(self) -> WeightMetadata:
        """What the engines build their plan from (one small object, sent once per group)."""
        return learner_metadata(self.module)

    def open(self, master_address: str, master_port: int, world_size: int, timeout_s: float) -> str:
        """Rank 0: open rank 0 of the group (blocks until every worker joined); returns the
        plan's fingerprint."""
        if self.group is not None:
            self.group.close()
        device = next(self.module.parameters()).device
        self.group = WeightGroup(master_address, master_port, 0, world_size, timeout_s, device)
        return self.plan.fingerprint

    def broadcast(self) -> dict:
        """Every rank (collective under ZeRO-3); rank 0 broadcasts each bucket. Returns
        seconds, bytes and buckets."""
        if self.rank == 0 and self.group is None:
            raise RuntimeError("learner-0: weight broadcast before the weight group was opened")
        start, sent = time.perf_counter(), 0
        for bucket, tensors in learner_buckets(self.module, self.plan, self.zero_stage):
            if self.rank == 0:
                self.group.broadcast(pack_bucket(bucket, tensors, self.group.device))
                sent += bucket.nbytes
        if self.rank == 0:
            self.group.synchronize()
        return {"seconds": time.perf_counter() - start, "bytes": sent, "buckets": len(self.plan.buckets)}


# ----------------------------------------------------------------------------- engine end


class NcclReceiver(ObjectStoreReceiver):
    """One rollout engine's end; its vLLM workers are ranks rank_offset .. rank_offset +
    workers() - 1 of the group."""

    def __init__(self, llm, name: str):
        super().__init__(llm, name)
        self.plan: BucketPlan | None = None

    def workers(self) -> int:
        """vLLM workers behind this engine (TP × PP): its number of ranks in the group."""
        return int(self.llm.llm_engine.vllm_config.parallel_config.world_size)

    def join(self, master_address: str, master_port: int, rank_offset: int, world_size: int,
             timeout_s: float, metadata: WeightMetadata, bucket_bytes: int) -> str:
        """Every worker joins the group (blocks until it has formed); returns the fingerprint
        of the plan derived here from the learner's `metadata`, which must equal the learner's."""
        self.plan = build_plan(metadata, bucket_bytes)
        self.llm.collective_rpc("init_weight_group", timeout=timeout_s, kwargs=dict(
            master_address=master_address, master_port=master_port, rank_offset=rank_offset,
            world_size=world_size, timeout_s=timeout_s))
        return self.plan.fingerprint

    def receive(self, fingerprint: str, version: int, timeout_s: float) -> float:
        """Receive the learner's broadcast into the live engine as `version`; returns seconds."""
        if self.plan is None:
            raise RuntimeError(f"{self.name}: weight receive before joining the weight group")
        if fingerprint != self.plan.fingerprint:
            raise RuntimeError(f"{self.name}: bucket plan {self.plan.fingerprint} != sender's {fingerprint}")
        start = time.perf_counter()
        self.llm.collective_rpc("receive_buckets", timeout=timeout_s, kwargs={"plan": self.plan})
        # Cached prefixes hold KV computed with the old weights; without this reset, requests
        # sharing a cached prefix (the probe, every n>1 group) read stale KV.
        self.llm.reset_prefix_cache()
        self.version = version
        return time.perf_counter() - start


class WeightGroupExtension:
    """Methods added to every vLLM worker (`worker_extension_cls`); called by `collective_rpc`.

    `self` is the vLLM worker: `self.rank` is its rank inside the engine (0..TP×PP-1),
    `self.device` its device, `self.reload_weights` vLLM's in-place weight reload.
    """

    def init_weight_group(self, master_address: str, master_port: int, rank_offset: int,
                          world_size: int, timeout_s: float = 120.0) -> int:
        """Join the weight group as rank `rank_offset + self.rank`; returns that rank."""
        engine_workers = self.vllm_config.parallel_config.world_size
        if not 0 <= self.rank < engine_workers:
            raise RuntimeError(f"vLLM worker rank {self.rank} outside its engine's {engine_workers} "
                               f"workers (data-parallel engines are not supported by the weight group)")
        old = getattr(self, "_rlaif_weight_group", None)
        if old is not None:
            old.close()
        self._rlaif_weight_group = WeightGroup(master_address, master_port, rank_offset + self.rank,
                                               world_size, timeout_s, self.device)
        return self._rlaif_weight_group.rank

    def receive_buckets(self, plan: BucketPlan) -> int:
        """Receive every bucket from rank 0 straight into vLLM's in-place reload; returns bytes.

        Every TP worker receives the full tensors and `reload_weights` keeps its own shard;
        q/k/v and gate/up arrive in the same call, so vLLM's fused parameters are complete.
        """
        group = getattr(self, "_rlaif_weight_group", None)
        if group is None:
            raise RuntimeError("receive_buckets before init_weight_group")
        stream = receive_tensors(group, plan)
        # A tied head must be loaded too (ends.load_into_engine says why); this runs inside
        # the worker, so it reloads directly instead of through collective_rpc.
        tied = bool(getattr(self.vllm_config.model_config.hf_text_config, "tie_word_embeddings", False))
        self.reload_weights(weights_iterator=with_tied_head(stream, tied), is_checkpoint_format=True)
        for _ in stream:   # the sender broadcasts every bucket: receive any the loader left
            pass
        group.synchronize()
        return plan.nbytes
