"""Weight buckets: a state dict cut into fixed-size flat byte buffers (pure, no Ray).

Why buckets of flat bytes: one `ray.put` per bucket instead of one per tensor (hundreds of
small objects cost more than their bytes), a bounded peak of extra memory on the sender, and
numpy buffers that receivers read zero-copy from the object store.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

_DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                                torch.int64, torch.int32, torch.uint8, torch.bool)}


@dataclass
class WeightBucket:
    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    offsets: list[int]     # byte offset of each tensor in `data`
    data: np.ndarray       # (nbytes,) uint8, the tensors back to back

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


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


def pack_bucket(named: list[tuple[str, torch.Tensor]]) -> WeightBucket:
    """Copy tensors into one flat uint8 buffer."""
    sizes = [t.numel() * t.element_size() for _, t in named]
    # Each tensor starts at a multiple of its element size: torch views a uint8 slice as a
    # wider dtype only at an aligned offset (e.g. 3 bf16 values, then a float32 at byte 6,
    # fails to unpack). Same-dtype buckets get no padding.
    offsets, end = [], 0
    for (_, t), size in zip(named, sizes):
        align = t.element_size()
        end = -(-end // align) * align
        offsets.append(end)
        end += size
    data = np.empty(end, dtype=np.uint8)
    for (_, t), off, size in zip(named, offsets, sizes):
        flat = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        data[off: off + size] = flat.numpy()
    return WeightBucket([n for n, _ in named], [tuple(t.shape) for _, t in named],
                        [str(t.dtype) for _, t in named], offsets, data)


def pack_state_dict(named: list[tuple[str, torch.Tensor]], bucket_bytes: int) -> list[WeightBucket]:
    sizes = [t.numel() * t.element_size() for _, t in named]
    return [pack_bucket([named[i] for i in idx]) for idx in plan_buckets(sizes, bucket_bytes)]


def unpack_bucket(bucket: WeightBucket) -> list[tuple[str, torch.Tensor]]:
    """Tensors viewing the bucket's buffer (no copy; the buffer may be read-only)."""
    out = []
    with warnings.catch_warnings():
        # Object-store buffers are read-only; the engine copies them into its own params.
        warnings.simplefilter("ignore", UserWarning)
        raw = torch.from_numpy(bucket.data)
    for name, shape, dtype, off in zip(bucket.names, bucket.shapes, bucket.dtypes, bucket.offsets):
        dt = _DTYPES[dtype]
        n = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dt).element_size()
        out.append((name, raw[off: off + n].view(dt).reshape(shape)))
    return out


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
