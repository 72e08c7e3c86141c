"""Weight buckets: bucket planning by hand, and pack → unpack round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlaif_ray.weights import pack_bucket, pack_state_dict, plan_buckets, unpack_bucket


@pytest.mark.parametrize(
    "sizes, bucket, expected",
    [
        ([], 8, []),
        ([4, 4, 4], 8, [[0, 1], [2]]),          # 4 + 4 = 8 fits exactly; 8 + 4 > 8 starts a new one
        ([8, 8], 8, [[0], [1]]),                # each exactly fills a bucket
        ([3, 10, 2, 2], 8, [[0], [1], [2, 3]]),  # 10 > 8: its own bucket, never split
        ([10], 8, [[0]]),                       # a lone oversized tensor
        ([2, 10, 3], 8, [[0], [1], [2]]),       # 2 + 10 > 8; after the big one, 10 + 3 > 8
        ([1, 2, 3, 2], 6, [[0, 1, 2], [3]]),      # 1 + 2 + 3 = 6 exact; the last 2 alone
        ([0, 5, 0], 5, [[0, 1, 2]]),            # empty tensors take no room
    ],
)
def test_plan_buckets(sizes, bucket, expected):
    assert plan_buckets(sizes, bucket) == expected


def test_plan_buckets_rejects_non_positive_size():
    with pytest.raises(ValueError, match="positive"):
        plan_buckets([1], 0)


def _named():
    g = torch.Generator().manual_seed(0)
    return [
        ("embed.weight", torch.randn(5, 3, generator=g)),                           # f32 60 B
        ("norm.weight", torch.randn(3, generator=g).to(torch.bfloat16)),            # bf16 6 B
        ("layer.0.w", torch.randn(2, 2, 2, generator=g)),                           # f32 32 B
        ("step", torch.tensor(7, dtype=torch.int64)),                               # i64 0-dim 8 B
        ("ids", torch.arange(6, dtype=torch.int64).reshape(3, 2)),                  # i64 48 B
        ("head.bias", torch.randn(1, generator=g).to(torch.bfloat16)),              # bf16 2 B
        ("non_contig", torch.arange(12, dtype=torch.float32).reshape(3, 4).t()),    # f32 48 B, strided
    ]


def _assert_same(got, want):
    assert [n for n, _ in got] == [n for n, _ in want]
    for (name, a), (_, b) in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), name


def test_pack_unpack_one_bucket_round_trip():
    named = _named()
    bucket = pack_bucket(named)
    assert bucket.data.dtype == np.uint8 and bucket.data.ndim == 1
    assert bucket.names == [n for n, _ in named]
    assert bucket.shapes == [(5, 3), (3,), (2, 2, 2), (), (3, 2), (1,), (4, 3)]
    assert bucket.dtypes == ["torch.float32", "torch.bfloat16", "torch.float32", "torch.int64",
                             "torch.int64", "torch.bfloat16", "torch.float32"]
    # Each tensor starts at a multiple of its element size:
    #   embed 0..60 | norm (bf16, align 2) 60..66 | layer (f32, align 4) 68..100
    #   step (i64, align 8) 104..112 | ids 112..160 | head (bf16) 160..162 | non_contig (f32) 164..212
    assert bucket.offsets == [0, 60, 68, 104, 112, 160, 164]
    assert bucket.nbytes == 212
    _assert_same(unpack_bucket(bucket), named)


def test_same_dtype_bucket_has_no_padding():
    named = [(f"w{i}", torch.randn(i + 1)) for i in range(4)]  # 1, 2, 3, 4 floats
    bucket = pack_bucket(named)
    assert bucket.offsets == [0, 4, 12, 24] and bucket.nbytes == 40  # 10 floats × 4 B
    _assert_same(unpack_bucket(bucket), named)


def test_pack_state_dict_buckets_account_for_every_byte():
    named = _named()
    sizes = [t.numel() * t.element_size() for _, t in named]
    assert sizes == [60, 6, 32, 8, 48, 2, 48]
    # Planned on payload sizes, bucket 64:
    #   [60]            60 + 6 > 64
    #   [6, 32, 8] = 46  46 + 48 > 64; laid out norm 0..6, layer (align 4) 8..40, step 40..48 → 48 B
    #   [48, 2] = 50     50 + 48 > 64; ids 0..48, head 48..50 → 50 B
    #   [48]
    buckets = pack_state_dict(named, bucket_bytes=64)
    assert [b.names for b in buckets] == [["embed.weight"], ["norm.weight", "layer.0.w", "step"],
                                          ["ids", "head.bias"], ["non_contig"]]
    assert [b.nbytes for b in buckets] == [60, 48, 50, 48]
    payload = sum(
        int(np.prod(s, dtype=np.int64)) * torch.empty((), dtype=getattr(torch, d.split(".")[1])).element_size()
        for b in buckets for s, d in zip(b.shapes, b.dtypes)
    )
    assert payload == sum(sizes) == 204
    _assert_same([nt for b in buckets for nt in unpack_bucket(b)], named)


def test_unpack_from_a_read_only_buffer():
    # Buffers read from the Ray object store are read-only numpy arrays.
    named = _named()
    bucket = pack_bucket(named)
    bucket.data.flags.writeable = False
    got = unpack_bucket(bucket)  # no warning escapes, no copy needed
    _assert_same(got, named)
    # The tensors view the buffer (zero copy).
    assert got[0][1].untyped_storage().data_ptr() == bucket.data.ctypes.data


def test_pack_copies_so_later_writes_do_not_leak():
    t = torch.zeros(4)
    bucket = pack_bucket([("w", t)])
    t += 1
    assert torch.equal(unpack_bucket(bucket)[0][1], torch.zeros(4))


def test_empty_bucket():
    bucket = pack_bucket([])
    assert bucket.nbytes == 0 and unpack_bucket(bucket) == []


def test_tied_head_named_from_the_embedding():
    from rlaif_ray.weights import with_tied_head

    emb, norm = torch.randn(6, 4), torch.ones(4)
    named = [("model.embed_tokens.weight", emb), ("model.norm.weight", norm)]
    out = list(with_tied_head(named, tie_word_embeddings=True))
    assert [n for n, _ in out] == ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"]
    assert out[1][1] is emb  # the same tensor, not a copy: nothing more is sent
    assert list(with_tied_head(named, tie_word_embeddings=False)) == named
    assert list(with_tied_head([("model.norm.weight", norm)], True)) == [("model.norm.weight", norm)]
    stream = with_tied_head(iter(named), True)  # lazy: a receiver's stream is consumed as it arrives
    assert next(stream)[0] == "model.embed_tokens.weight" and next(stream)[0] == "lm_head.weight"
