"""The one tensor format of weight sync (pure): bucket planning by hand, the same plan on both
ends, exact round trips through the wire bytes, rank layout, and bad metadata named."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from rlaif_ray.weight_sync.format import (PlanError, WeightMetadata, build_plan, check_tensors,
                                          empty_bucket, from_slot_bytes, pack_bucket, plan_buckets, slot_bytes,
                                          unpack_bucket, with_tied_head)
from rlaif_ray.weight_sync.nccl import group_layout


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


def _weights(seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        ("a", torch.randn(4, 4, generator=g)),                       # fp32, 64 B
        ("e", torch.randn(10, generator=g).to(torch.bfloat16)),      # bf16, 20 B
        ("b", torch.randn(8, generator=g)),                          # fp32, 32 B
        ("c", torch.randn(16, 2, generator=g)),                      # fp32, 128 B (> bucket)
        ("d", torch.randn(3, generator=g)),                          # fp32, 12 B
    ]


def test_same_metadata_gives_same_plan_on_both_ends():
    sender = WeightMetadata.of(_weights(seed=0))
    # The receiver gets the metadata through the object store (pickled), never the tensors,
    # and different values must not matter: only names, shapes and dtypes do.
    receiver = pickle.loads(pickle.dumps(WeightMetadata.of(_weights(seed=1))))
    p, q = build_plan(sender, 100), build_plan(receiver, 100)
    assert p == q and p.fingerprint == q.fingerprint
    assert build_plan(sender, 64).fingerprint != p.fingerprint     # bucket size is part of it
    renamed = WeightMetadata(("a2",) + sender.names[1:], sender.shapes, sender.dtypes)
    assert build_plan(renamed, 100).fingerprint != p.fingerprint


def test_buckets_per_dtype_within_the_size_limit():
    plan = build_plan(WeightMetadata.of(_weights()), bucket_bytes=100)
    # fp32 first (first dtype seen), in order: a 64 B + b 32 B = 96 B ≤ 100; c (128 B) alone;
    # d 12 B. Then bf16: e alone. Offsets are in elements: b starts after a's 16.
    got = [(b.dtype, [(s.name, s.offset, s.numel) for s in b.slots], b.nbytes) for b in plan.buckets]
    assert got == [
        ("torch.float32", [("a", 0, 16), ("b", 16, 8)], 96),
        ("torch.float32", [("c", 0, 32)], 128),
        ("torch.float32", [("d", 0, 3)], 12),
        ("torch.bfloat16", [("e", 0, 10)], 20),
    ]
    for b in plan.buckets:
        assert b.nbytes <= 100 or len(b.slots) == 1
    assert sorted(plan.names) == ["a", "b", "c", "d", "e"]
    assert plan.nbytes == 64 + 32 + 128 + 12 + 20


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pack_unpack_round_trip_is_exact(dtype):
    named = [(n, t.to(dtype)) for n, t in _weights()]
    tensors = dict(named)
    plan = build_plan(WeightMetadata.of(named), bucket_bytes=48)
    check_tensors(plan, tensors)
    out = {}
    for bucket in plan.buckets:
        flat = pack_bucket(bucket, tensors)
        received = empty_bucket(bucket, "cpu")
        received.copy_(flat)                        # what the broadcast does
        views = unpack_bucket(bucket, received)
        for _, v in views:
            assert v.data_ptr() >= received.data_ptr()   # a view of the buffer, no copy
        out.update(views)
    assert list(out) == plan.names
    for name, t in named:
        assert out[name].dtype == dtype and torch.equal(out[name], t), name


def test_rank_layout_two_engines_tensor_parallel_two():
    layout = group_layout([2, 2])
    # rank 0 learner; engine 0 workers → 1, 2; engine 1 workers → 3, 4.
    assert layout.world_size == 5 and layout.rank_offsets == (1, 3)
    assert layout.ranks_of(0) == [1, 2] and layout.ranks_of(1) == [3, 4]
    assert group_layout([1, 4, 1]).rank_offsets == (1, 2, 6)
    with pytest.raises(PlanError, match="rollout engine 1"):
        group_layout([2, 0])
    with pytest.raises(PlanError, match="at least one"):
        group_layout([])


def test_sender_tensors_that_do_not_match_the_plan_are_named():
    named = _weights()
    plan = build_plan(WeightMetadata.of(named), 100)
    tensors = dict(named)
    with pytest.raises(PlanError, match="'b'.*not among the weights"):
        check_tensors(plan, {k: v for k, v in tensors.items() if k != "b"})
    with pytest.raises(PlanError, match="'extra'.*not in the bucket plan"):
        check_tensors(plan, {**tensors, "extra": torch.zeros(1)})
    with pytest.raises(PlanError, match=r"'c': plan has \(16, 2\)"):
        check_tensors(plan, {**tensors, "c": torch.zeros(2, 16)})
    with pytest.raises(PlanError, match="'a'.*bfloat16"):
        pack_bucket(plan.buckets[0], {**tensors, "a": tensors["a"].to(torch.bfloat16)})


def test_bad_metadata_is_named():
    meta = WeightMetadata.of(_weights())
    with pytest.raises(PlanError, match="5 names, 4 shapes"):
        build_plan(WeightMetadata(meta.names, meta.shapes[:4], meta.dtypes), 100)
    with pytest.raises(PlanError, match="'a' appears twice"):
        build_plan(WeightMetadata(("a", "a") + meta.names[2:], meta.shapes, meta.dtypes), 100)
    with pytest.raises(PlanError, match="'b' has dtype 'torch.complex64'"):
        build_plan(WeightMetadata(meta.names, meta.shapes, meta.dtypes[:2] + ("torch.complex64",) + meta.dtypes[3:]), 100)
    with pytest.raises(PlanError, match="'a' has shape"):
        build_plan(WeightMetadata(meta.names, ((4, -1),) + meta.shapes[1:], meta.dtypes), 100)
    with pytest.raises(PlanError, match="bucket_bytes"):
        build_plan(meta, 0)


def test_unpack_rejects_a_buffer_of_the_wrong_size():
    plan = build_plan(WeightMetadata.of(_weights()), 100)
    with pytest.raises(PlanError, match="expected flat \\(24,\\)"):
        unpack_bucket(plan.buckets[0], torch.zeros(23))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.bool])
def test_object_store_bytes_round_trip_read_only_and_zero_copy(dtype):
    # What the object-store backend does: each tensor's bytes as a numpy array viewing the
    # tensor (no pack), read-only when read back from the store, viewed again as the dtype.
    named = [(n, (t > 0) if dtype == torch.bool else t.to(dtype)) for n, t in _weights()]
    plan = build_plan(WeightMetadata.of(named), bucket_bytes=100)
    for bucket in plan.buckets:
        parts = slot_bytes(bucket, dict(named))
        assert [p.ctypes.data for p in parts] == [dict(named)[s.name].data_ptr() for s in bucket.slots]  # views
        stored = [p.copy() for p in parts]
        for p in stored:
            p.flags.writeable = False
        received = from_slot_bytes(bucket, stored)     # no warning escapes, no copy
        assert [t.untyped_storage().data_ptr() for _, t in received] == [p.ctypes.data for p in stored]
        for name, view in received:
            assert view.dtype == dtype and torch.equal(view, dict(named)[name]), name
    first = plan.buckets[0]
    n = first.slots[0].numel * (2 if dtype == torch.bfloat16 else 1 if dtype == torch.bool else 4)
    good = slot_bytes(first, dict(named))
    with pytest.raises(PlanError, match=rf"tensor 'a': expected {n} bytes, got {n - 1}"):
        from_slot_bytes(first, [np.zeros(n - 1, np.uint8), *good[1:]])
    with pytest.raises(PlanError, match=f"expected {len(first.slots)} tensors, got {len(first.slots) - 1}"):
        from_slot_bytes(first, good[1:])


def test_pack_copies_so_later_writes_do_not_leak():
    t = torch.zeros(4)
    plan = build_plan(WeightMetadata.of([("w", t)]), 64)
    flat = pack_bucket(plan.buckets[0], {"w": t})
    t += 1
    assert torch.equal(unpack_bucket(plan.buckets[0], flat)[0][1], torch.zeros(4))


def test_tied_head_named_from_the_embedding():
    emb, norm = torch.randn(6, 4), torch.ones(4)
    named = [("model.embed_tokens.weight", emb), ("model.norm.weight", norm)]
    out = list(with_tied_head(named, tie_word_embeddings=True))
    assert [n for n, _ in out] == ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"]
    assert out[1][1] is emb  # the same tensor, not a copy: nothing more is sent
    assert list(with_tied_head(named, tie_word_embeddings=False)) == named
    assert list(with_tied_head([("model.norm.weight", norm)], True)) == [("model.norm.weight", norm)]
    stream = with_tied_head(iter(named), True)  # lazy: a receiver's stream is consumed as it arrives
    assert next(stream)[0] == "model.embed_tokens.weight" and next(stream)[0] == "lm_head.weight"
