"""The NCCL weight broadcast plan: who is in the group, and how tensors pack into flat buckets.

Pure (no Ray, no vLLM, no CUDA): both ends of the broadcast derive the same plan from the
same metadata (names, shapes, dtypes of the policy's tensors, sent once through the object
store), so per sync only raw bucket bytes cross the wire, never names or shapes.

Group (one NCCL communicator per run):

    rank 0                      learner rank 0 (the only sender)
    ranks 1 .. N                every vLLM worker of every rollout engine; engine e owns the
                                contiguous ranks offset_e .. offset_e + workers_e - 1, where
                                workers_e = tensor_parallel × pipeline_parallel of engine e
    world_size = 1 + Σ_e workers_e

Buckets: tensors are grouped by dtype (in order of first appearance), then cut in order by
`plan_buckets` into buckets of at most `bucket_bytes` (a tensor larger than that gets its
own). Each bucket is one flat 1-D tensor of its dtype; tensor i of the bucket is
`flat[offset_i : offset_i + numel_i].view(shape_i)`. One dtype per bucket means no alignment
padding and typed views on both ends.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from rlaif_ray.weights import plan_buckets

# dtypes a policy's weights may have; NCCL moves bytes, so any of these works on the wire.
DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                               torch.int64, torch.int32, torch.uint8, torch.bool)}


class PlanError(ValueError):
    """Metadata or tensors that do not fit the broadcast plan; the message names the tensor."""


# ----------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class WeightMetadata:
    """What the receivers must know about the sender's tensors, in the sender's order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]             # e.g. "torch.bfloat16"

    @classmethod
    def of(cls, named: Sequence[tuple[str, torch.Tensor]]) -> "WeightMetadata":
        return cls(tuple(n for n, _ in named), tuple(tuple(t.shape) for _, t in named),
                   tuple(str(t.dtype) for _, t in named))

    def validate(self) -> None:
        """Raise `PlanError` naming the first bad tensor."""
        if not (len(self.names) == len(self.shapes) == len(self.dtypes)):
            raise PlanError(f"weight metadata: {len(self.names)} names, {len(self.shapes)} shapes, "
                            f"{len(self.dtypes)} dtypes; they must be the same length")
        if not self.names:
            raise PlanError("weight metadata: no tensors")
        seen: set[str] = set()
        for name, shape, dtype in zip(self.names, self.shapes, self.dtypes):
            if not isinstance(name, str) or not name:
                raise PlanError(f"weight metadata: tensor name {name!r} is not a non-empty string")
            if name in seen:
                raise PlanError(f"weight metadata: tensor {name!r} appears twice")
            seen.add(name)
            if dtype not in DTYPES:
                raise PlanError(f"weight metadata: tensor {name!r} has dtype {dtype!r}, "
                                f"not one of {sorted(DTYPES)}")
            if any((not isinstance(d, int)) or d < 0 for d in shape):
                raise PlanError(f"weight metadata: tensor {name!r} has shape {shape}, "
                                f"dimensions must be non-negative ints")


# ----------------------------------------------------------------------------- buckets


@dataclass(frozen=True)
class Slot:
    """One tensor inside a flat bucket."""

    name: str
    shape: tuple[int, ...]
    offset: int      # in elements of the bucket's dtype
    numel: int


@dataclass(frozen=True)
class FlatBucket:
    dtype: str
    slots: tuple[Slot, ...]
    numel: int       # flat length, elements = Σ slot.numel (no padding: one dtype)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)


@dataclass(frozen=True)
class BroadcastPlan:
    buckets: tuple[FlatBucket, ...]
    bucket_bytes: int
    fingerprint: str  # sha256 of (bucket_bytes, metadata): equal on both ends or no sync

    @property
    def names(self) -> list[str]:
        return [s.name for b in self.buckets for s in b.slots]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buckets)


def build_plan(meta: WeightMetadata, bucket_bytes: int) -> BroadcastPlan:
    """The deterministic bucket plan of `meta` (same input → same plan, on any process)."""
    meta.validate()
    if bucket_bytes <= 0:
        raise PlanError(f"bucket_bytes must be positive, got {bucket_bytes}")
    by_dtype: dict[str, list[int]] = {}
    for i, dtype in enumerate(meta.dtypes):
        by_dtype.setdefault(dtype, []).append(i)   # dicts keep first-appearance order
    buckets = []
    for dtype, idx in by_dtype.items():
        numels = [math.prod(meta.shapes[i]) for i in idx]
        item = _itemsize(dtype)
        for group in plan_buckets([n * item for n in numels], bucket_bytes):
            slots, offset = [], 0
            for g in group:
                slots.append(Slot(meta.names[idx[g]], tuple(meta.shapes[idx[g]]), offset, numels[g]))
                offset += numels[g]
            buckets.append(FlatBucket(dtype, tuple(slots), offset))
    return BroadcastPlan(tuple(buckets), bucket_bytes, _fingerprint(meta, bucket_bytes))


def check_names(plan: BroadcastPlan, names: Sequence[str]) -> None:
    """The sender holds exactly the plan's tensors; raise `PlanError` naming the first misfit."""
    planned, have = set(plan.names), set(names)
    for name in names:
        if name not in planned:
            raise PlanError(f"tensor {name!r} is not in the broadcast plan (the weights changed "
                            f"names since the plan was made)")
    for name in plan.names:
        if name not in have:
            raise PlanError(f"tensor {name!r} is in the broadcast plan but not among the weights")


def check_tensors(plan: BroadcastPlan, tensors: Mapping[str, torch.Tensor]) -> None:
    """`check_names`, plus every tensor's shape and dtype."""
    check_names(plan, list(tensors))
    for b in plan.buckets:
        for s in b.slots:
            t = tensors[s.name]
            if tuple(t.shape) != s.shape or str(t.dtype) != b.dtype:
                raise PlanError(f"tensor {s.name!r}: plan has {s.shape} {b.dtype}, "
                                f"weights have {tuple(t.shape)} {t.dtype}")


def pack_bucket(bucket: FlatBucket, tensors: Mapping[str, torch.Tensor],
                device: torch.device | str | None = None) -> torch.Tensor:
    """(bucket.numel,) flat tensor of the bucket's dtype on `device` (default: the first tensor's)."""
    if device is None:
        device = tensors[bucket.slots[0].name].device
    flat = torch.empty(bucket.numel, dtype=bucket.torch_dtype, device=device)
    for s in bucket.slots:
        t = tensors[s.name]
        if tuple(t.shape) != s.shape or str(t.dtype) != bucket.dtype:
            raise PlanError(f"tensor {s.name!r}: plan has {s.shape} {bucket.dtype}, "
                            f"got {tuple(t.shape)} {t.dtype}")
        flat[s.offset: s.offset + s.numel].copy_(t.detach().reshape(-1))
    return flat


def empty_bucket(bucket: FlatBucket, device: torch.device | str) -> torch.Tensor:
    """The receive buffer of one bucket."""
    return torch.empty(bucket.numel, dtype=bucket.torch_dtype, device=device)


def unpack_bucket(bucket: FlatBucket, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(name, view) of every tensor in the bucket; views share `flat`'s memory (no copy)."""
    if flat.dim() != 1 or flat.numel() != bucket.numel or str(flat.dtype) != bucket.dtype:
        raise PlanError(f"bucket of {bucket.slots[0].name!r}..: expected flat ({bucket.numel},) "
                        f"{bucket.dtype}, got {tuple(flat.shape)} {flat.dtype}")
    return [(s.name, flat[s.offset: s.offset + s.numel].view(s.shape)) for s in bucket.slots]


def as_bytes(flat: torch.Tensor) -> torch.Tensor:
    """The bucket as a uint8 view: the wire format (NCCL has no bool; bytes are bytes)."""
    return flat.view(torch.uint8)


# ----------------------------------------------------------------------------- group


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


# ----------------------------------------------------------------------------- helpers


def _itemsize(dtype: str) -> int:
    return torch.empty((), dtype=DTYPES[dtype]).element_size()


def _fingerprint(meta: WeightMetadata, bucket_bytes: int) -> str:
    doc = json.dumps([bucket_bytes, list(meta.names), [list(s) for s in meta.shapes], list(meta.dtypes)])
    return hashlib.sha256(doc.encode()).hexdigest()[:16]
