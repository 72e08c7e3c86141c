"""The one tensor format of weight sync: metadata, the bucket plan, and flat buckets.

Pure (no Ray, no vLLM, no CUDA). Every backend moves the policy the same way: both ends
derive the same `BucketPlan` from the same `WeightMetadata` (names, shapes, dtypes of the
learner's tensors, in its order), so per sync only raw bucket bytes travel, never names or
shapes, and a fingerprint of the plan tells whether both ends agree.

Buckets: tensors are grouped by dtype (in order of first appearance), then cut in order by
`plan_buckets` into buckets of at most `bucket_bytes` (a tensor larger than that gets its
own). Each bucket is one flat 1-D tensor of its dtype; tensor i of the bucket is
`flat[offset_i : offset_i + numel_i].view(shape_i)`. One dtype per bucket means no alignment
padding and typed views on both ends. On the wire a bucket is bytes, since NCCL has no bool and
numpy no bfloat16: NCCL broadcasts the flat bucket's bytes (`as_bytes`); the object store
holds one byte array per tensor of the bucket (`slot_bytes`), saving the pack.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from rlaif_ray.errors import PlanError

# dtypes a policy's weights may have.
DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                               torch.int64, torch.int32, torch.uint8, torch.bool)}


# ----------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class WeightMetadata:
    """What the receivers must know about the sender's tensors, in the sender's order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]             # e.g. "torch.bfloat16"

    @classmethod
    def of(cls, named: Sequence[tuple[str, torch.Tensor]]) -> "WeightMetadata":
        """Of (name, tensor) pairs; a ZeRO-3 partition reports its full shape as `ds_shape`."""
        return cls(tuple(n for n, _ in named), tuple(tuple(getattr(t, "ds_shape", t.shape)) for _, t in named),
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


# ----------------------------------------------------------------------------- the plan


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
class BucketPlan:
    buckets: tuple[FlatBucket, ...]
    bucket_bytes: int
    fingerprint: str  # sha256 of (bucket_bytes, metadata): equal on both ends or no sync

    @property
    def names(self) -> list[str]:
        return [s.name for b in self.buckets for s in b.slots]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buckets)


def plan_buckets(sizes: list[int], bucket_bytes: int) -> list[list[int]]:
    """Group tensor indices, in order, into buckets of at most `bucket_bytes`.

    A tensor larger than the bucket gets a bucket of its own (tensors are never split).
    """
    if bucket_bytes <= 0:
        raise ValueError("bucket_bytes must be positive")
    buckets, current, used = [], [], 0
    for i, size in enumerate(sizes):
        if current and used + size > bucket_bytes:
            buckets.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        buckets.append(current)
    return buckets


def build_plan(meta: WeightMetadata, bucket_bytes: int) -> BucketPlan:
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
    return BucketPlan(tuple(buckets), bucket_bytes, _fingerprint(meta, bucket_bytes))


def check_names(plan: BucketPlan, names: Sequence[str]) -> None:
    """The sender holds exactly the plan's tensors; raise `PlanError` naming the first misfit."""
    planned, have = set(plan.names), set(names)
    for name in names:
        if name not in planned:
            raise PlanError(f"tensor {name!r} is not in the bucket plan (the weights changed "
                            f"names since the plan was made)")
    for name in plan.names:
        if name not in have:
            raise PlanError(f"tensor {name!r} is in the bucket plan but not among the weights")


def check_tensors(plan: BucketPlan, tensors: Mapping[str, torch.Tensor]) -> None:
    """`check_names`, plus every tensor's shape and dtype."""
    check_names(plan, list(tensors))
    for b in plan.buckets:
        for s in b.slots:
            t = tensors[s.name]
            if tuple(t.shape) != s.shape or str(t.dtype) != b.dtype:
                raise PlanError(f"tensor {s.name!r}: plan has {s.shape} {b.dtype}, "
                                f"weights have {tuple(t.shape)} {t.dtype}")


# ----------------------------------------------------------------------------- buckets


def pack_bucket(bucket: FlatBucket, tensors: Mapping[str, torch.Tensor],
                device: torch.device | str | None = None) -> torch.Tensor:
    """(bucket.numel,) flat tensor of the bucket's dtype on `device` (default: the first tensor's)."""
    if device is None:
        device = tensors[bucket.slots[0].name].device
    flat = torch.empty(bucket.numel, dtype=bucket.torch_dtype, device=device)
    for s in bucket.slots:
        flat[s.offset: s.offset + s.numel].copy_(_slot_tensor(bucket, s, tensors).reshape(-1))
    return flat


def _slot_tensor(bucket: FlatBucket, slot: Slot, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The slot's tensor, detached, after checking it has the plan's shape and dtype."""
    t = tensors[slot.name].detach()
    if tuple(t.shape) != slot.shape or str(t.dtype) != bucket.dtype:
        raise PlanError(f"tensor {slot.name!r}: plan has {slot.shape} {bucket.dtype}, got {tuple(t.shape)} {t.dtype}")
    return t


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
    """The bucket as a uint8 view: the wire format."""
    return flat.view(torch.uint8)


def slot_bytes(bucket: FlatBucket, tensors: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
    """The bucket as separate byte arrays, one per slot in slot order, each viewing its
    tensor's memory where the tensor is a contiguous CPU one (no copy; others are copied to
    the CPU first). The object-store backend puts this list: Ray then copies every buffer into
    the store once, where packing a flat bucket first would cost a second copy into fresh pages."""
    return [_slot_tensor(bucket, s, tensors).to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
            for s in bucket.slots]


def from_slot_bytes(bucket: FlatBucket, parts: Sequence[np.ndarray]) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every slot, viewing `parts` (`slot_bytes`' arrays, e.g. read-only
    from the object store; no copy)."""
    if len(parts) != len(bucket.slots):
        raise PlanError(f"bucket of {bucket.slots[0].name!r}..: expected {len(bucket.slots)} tensors, got {len(parts)}")
    item = _itemsize(bucket.dtype)
    named = []
    for s, data in zip(bucket.slots, parts):
        with warnings.catch_warnings():
            # Object-store buffers are read-only; the engine copies them into its own params.
            warnings.simplefilter("ignore", UserWarning)
            raw = torch.from_numpy(data)
        if raw.dtype != torch.uint8 or raw.numel() != s.numel * item:
            raise PlanError(f"tensor {s.name!r}: expected {s.numel * item} bytes, got {raw.numel()} {raw.dtype}")
        named.append((s.name, raw.view(bucket.torch_dtype).view(s.shape)))
    return named


def wire_round_trip(named: Sequence[tuple[str, torch.Tensor]], bucket_bytes: int) -> list[tuple[str, torch.Tensor]]:
    """`named` as an object-store receiver gets it: planned, turned into wire bytes (copied, as
    the store does) and viewed back.

    What the object-store backend does to the tensors, minus Ray: checks and benchmarks that
    drive one engine in-process load this, so they exercise the real format.
    """
    plan = build_plan(WeightMetadata.of(named), bucket_bytes)
    tensors = dict(named)
    return [nt for b in plan.buckets
            for nt in from_slot_bytes(b, [part.copy() for part in slot_bytes(b, tensors)])]


# ----------------------------------------------------------------------------- tied heads

# Names of the input embedding in HF causal LMs whose output head can be tied to it.
INPUT_EMBEDDING_NAMES = ("model.embed_tokens.weight", "transformer.wte.weight", "model.decoder.embed_tokens.weight")


def with_tied_head(named: Iterable[tuple[str, torch.Tensor]], tie_word_embeddings: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """`named` (a list or a lazy stream), with ("lm_head.weight", the input embedding) right
    after the embedding when the model ties them.

    HF's `named_parameters` lists a tied parameter once, under the embedding's name, so the
    learner never sends the head. vLLM must still be given it: on CPU its head keeps a
    pre-packed copy of the matrix, refreshed only when the head itself is loaded (see
    docs/weight-sync.md). The same tensor object is yielded again, not a copy. A stream that
    names `lm_head.weight` itself should not be passed with `tie_word_embeddings=True`.
    """
    for name, tensor in named:
        yield name, tensor
        if tie_word_embeddings and name in INPUT_EMBEDDING_NAMES:
            yield "lm_head.weight", tensor


def _itemsize(dtype: str) -> int:
    return torch.empty((), dtype=DTYPES[dtype]).element_size()


def _fingerprint(meta: WeightMetadata, bucket_bytes: int) -> str:
    doc = json.dumps([bucket_bytes, list(meta.names), [list(s) for s in meta.shapes], list(meta.dtypes)])
    return hashlib.sha256(doc.encode()).hexdigest()[:16]
