"""NCCL weight sync: both ends of the broadcast group learner-rank-0 → every vLLM worker.

Receiving end: `WeightGroupExtension`, mixed into every vLLM worker through the engine arg
`worker_extension_cls` (vLLM adds it to the worker's bases), so `llm.collective_rpc`
reaches it on each tensor-parallel worker. Sending end: `LearnerWeightSender`, held by
learner rank 0. The bucket plan and the rank layout are `rlaif_ray.nccl_plan`.

Transport: NCCL (vLLM's `PyNcclCommunicator` over a `StatelessProcessGroup`, which leaves
torch.distributed's global group — the learners' DeepSpeed group — alone) when the tensors
live on CUDA. On CPU the same group runs over gloo on the same TCP store: the config only
allows `sync.backend: nccl` with GPUs, so gloo exists to test everything but the NCCL calls
themselves on machines without one.
"""

from __future__ import annotations

import datetime
import time
from typing import Iterator, Mapping

import torch

from rlaif_ray.nccl_plan import (BroadcastPlan, WeightMetadata, as_bytes, build_plan, check_names,
                                 check_tensors, empty_bucket, pack_bucket, unpack_bucket)
from rlaif_ray.weights import with_tied_head

WORKER_EXTENSION = "actors.nccl_sync.WeightGroupExtension"  # the qualname vLLM resolves


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


def receive_tensors(group: WeightGroup, plan: BroadcastPlan) -> Iterator[tuple[str, torch.Tensor]]:
    """Receive the plan's buckets one by one, yielding (name, view) as each arrives.

    Lazy on purpose: vLLM's loader consumes the iterator as it loads, so the receiver holds
    one bucket (plus the layer vLLM is assembling) instead of a second copy of the model.
    """
    for bucket in plan.buckets:
        flat = empty_bucket(bucket, group.device)
        group.broadcast(flat)
        yield from unpack_bucket(bucket, flat)


def send_buckets(group: WeightGroup, plan: BroadcastPlan, tensors: Mapping[str, torch.Tensor]) -> int:
    """Rank 0: broadcast every bucket of `plan` packed from `tensors`; returns bytes sent."""
    check_tensors(plan, tensors)
    for bucket in plan.buckets:
        group.broadcast(pack_bucket(bucket, tensors, group.device))
    group.synchronize()
    return plan.nbytes


# ----------------------------------------------------------------------------- receiving end


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

    def receive_buckets(self, plan: BroadcastPlan) -> int:
        """Receive every bucket from rank 0 straight into vLLM's in-place reload; returns bytes.

        Every TP worker receives the full tensors and `reload_weights` keeps its own shard;
        q/k/v and gate/up arrive in the same call, so vLLM's fused parameters are complete.
        """
        group = getattr(self, "_rlaif_weight_group", None)
        if group is None:
            raise RuntimeError("receive_buckets before init_weight_group")
        stream = receive_tensors(group, plan)
        # A tied output head is not among the learner's parameters; vLLM must load it anyway
        # (on CPU it keeps a pre-packed copy otherwise): rlaif_ray.weights.with_tied_head.
        tied = bool(getattr(self.vllm_config.model_config.hf_text_config, "tie_word_embeddings", False))
        self.reload_weights(weights_iterator=with_tied_head(stream, tied), is_checkpoint_format=True)
        for _ in stream:   # the sender broadcasts every bucket: receive any the loader left
            pass
        group.synchronize()
        return plan.nbytes


def engine_workers(llm) -> int:
    """vLLM workers behind one engine (TP × PP): its number of ranks in the weight group."""
    return int(llm.llm_engine.vllm_config.parallel_config.world_size)


def engine_init_weight_group(llm, master_address: str, master_port: int, rank_offset: int,
                             world_size: int, timeout_s: float) -> list[int]:
    """Every worker of `llm` joins the group (blocks until the whole group has formed)."""
    return llm.collective_rpc("init_weight_group", timeout=timeout_s, kwargs=dict(
        master_address=master_address, master_port=master_port, rank_offset=rank_offset,
        world_size=world_size, timeout_s=timeout_s))


def engine_receive(llm, plan: BroadcastPlan, timeout_s: float) -> None:
    llm.collective_rpc("receive_buckets", timeout=timeout_s, kwargs={"plan": plan})
    # Cached prefixes hold KV computed with the old weights; without this reset, requests
    # sharing a cached prefix (the probe, every n>1 group) read stale KV.
    llm.reset_prefix_cache()


# ----------------------------------------------------------------------------- sending end


def _learner_named_params(module) -> list:
    return list(module.named_parameters())


def learner_metadata(module) -> WeightMetadata:
    """Names, full shapes and dtypes of the policy (ZeRO-3 partitions report `ds_shape`)."""
    params = _learner_named_params(module)
    return WeightMetadata(tuple(n for n, _ in params),
                          tuple(tuple(getattr(p, "ds_shape", p.shape)) for _, p in params),
                          tuple(str(p.dtype) for _, p in params))


class LearnerWeightSender:
    """Learner rank 0's end of the group, plus the plan every learner rank shares."""

    def __init__(self, module, bucket_bytes: int, zero_stage: int):
        self.module, self.zero_stage = module, zero_stage
        self.plan = build_plan(learner_metadata(module), bucket_bytes)
        self.group: WeightGroup | None = None

    def open(self, master_address: str, master_port: int, world_size: int, timeout_s: float) -> str:
        if self.group is not None:
            self.group.close()
        device = next(self.module.parameters()).device
        self.group = WeightGroup(master_address, master_port, 0, world_size, timeout_s, device)
        return self.plan.fingerprint

    def broadcast(self, rank: int) -> dict:
        """Collective over the learner ranks under ZeRO-3 (each bucket's parameters are
        gathered on all of them); only rank 0 sends. Returns seconds, bytes and buckets."""
        start = time.perf_counter()
        params = dict(_learner_named_params(self.module))
        check_names(self.plan, list(params))
        sent = 0
        for bucket in self.plan.buckets:
            chosen = {s.name: params[s.name] for s in bucket.slots}
            if self.zero_stage == 3:
                import deepspeed

                with deepspeed.zero.GatheredParameters(list(chosen.values()), modifier_rank=None):
                    sent += self._send_one(rank, bucket, chosen)
            else:
                sent += self._send_one(rank, bucket, chosen)
        if rank == 0:
            self.group.synchronize()
        return {"seconds": time.perf_counter() - start, "bytes": sent, "buckets": len(self.plan.buckets)}

    def _send_one(self, rank: int, bucket, chosen: dict) -> int:
        if rank != 0:
            return 0
        if self.group is None:
            raise RuntimeError("learner-0: broadcast_weights before init_weight_group")
        tensors = {n: p.detach() for n, p in chosen.items()}
        flat = pack_bucket(bucket, tensors, self.group.device)
        self.group.broadcast(flat)
        return bucket.nbytes
