"""RolloutBatch packing, masks, concat/select, and the model-side position helpers."""

from __future__ import annotations

import numpy as np
import torch

from rlaif_ray.batch import PAD_ID, RolloutBatch, build_shard, gather_response, model_inputs, response_positions


def _hand_batch(version: int = 3) -> RolloutBatch:
    # row 0: prompt [5 6 7]  response [9 10]      → 5 tokens
    # row 1: prompt [8]      response [11 12 13]  → 4 tokens
    # row 2: prompt [14 15]  response []          → 2 tokens (empty response)
    return build_shard(
        prompt_ids=[[5, 6, 7], [8], [14, 15]],
        response_ids=[[9, 10], [11, 12, 13], []],
        response_logp=[[-0.1, -0.2], [-0.3, -0.4, -0.5], []],
        prompt_index=[0, 0, 1],
        sample_index=[0, 1, 0],
        prompts=["p0", "p0", "p1"],
        responses=["r0", "r1", ""],
        max_response_len=4,
        policy_version=version,
        meta={"actor": "rollout-0"},
    )


def test_build_shard_packs_ragged_rows():
    b = _hand_batch()
    assert len(b) == 3
    # width = longest prompt + response = 5; right-padded with PAD_ID.
    np.testing.assert_array_equal(b.input_ids, [[5, 6, 7, 9, 10],
                                                [8, 11, 12, 13, PAD_ID],
                                                [14, 15, PAD_ID, PAD_ID, PAD_ID]])
    assert b.input_ids.dtype == np.int64
    np.testing.assert_array_equal(b.prompt_lens, [3, 1, 2])
    np.testing.assert_array_equal(b.response_lens, [2, 3, 0])
    # (B, T=max_response_len) logprobs, 0 on padding.
    assert b.max_response_len == 4
    assert b.rollout_logp.dtype == np.float32
    np.testing.assert_allclose(b.rollout_logp, [[-0.1, -0.2, 0, 0],
                                                [-0.3, -0.4, -0.5, 0],
                                                [0, 0, 0, 0]])
    np.testing.assert_array_equal(b.prompt_index, [0, 0, 1])
    np.testing.assert_array_equal(b.sample_index, [0, 1, 0])
    assert b.prompts == ["p0", "p0", "p1"] and b.responses == ["r0", "r1", ""]
    assert b.policy_version == 3 and b.meta == {"actor": "rollout-0"}


def test_response_mask_and_ids():
    b = _hand_batch()
    mask = b.response_mask()
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    # Column t is input position prompt_len + t; PAD_ID past each response.
    ids = b.response_ids()
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, [[9, 10, 0, 0], [11, 12, 13, 0], [0, 0, 0, 0]])


def test_concat_pads_widths_and_response_lengths():
    a = _hand_batch()  # width 5, T 4
    b = build_shard([[21]], [[22, 23]], [[-1.0, -2.0]], [2], [0], ["q"], ["s"],
                    max_response_len=2, policy_version=3, meta={"actor": "rollout-1"})  # width 3, T 2
    c = RolloutBatch.concat([a, b])
    assert len(c) == 4
    assert c.input_ids.shape == (4, 5) and c.rollout_logp.shape == (4, 4)
    np.testing.assert_array_equal(c.input_ids[3], [21, 22, 23, 0, 0])
    np.testing.assert_allclose(c.rollout_logp[3], [-1.0, -2.0, 0, 0])
    np.testing.assert_array_equal(c.input_ids[:3], a.input_ids)
    np.testing.assert_array_equal(c.prompt_lens, [3, 1, 2, 1])
    np.testing.assert_array_equal(c.response_lens, [2, 3, 0, 2])
    np.testing.assert_array_equal(c.prompt_index, [0, 0, 1, 2])
    np.testing.assert_array_equal(c.sample_index, [0, 1, 0, 0])
    assert c.prompts == ["p0", "p0", "p1", "q"] and c.responses == ["r0", "r1", "", "s"]
    assert c.policy_version == 3
    assert c.meta == {"shards": [{"actor": "rollout-0"}, {"actor": "rollout-1"}]}
    # Masks and ids still line up after padding.
    np.testing.assert_array_equal(c.response_mask()[3], [1, 1, 0, 0])
    np.testing.assert_array_equal(c.response_ids()[3], [22, 23, 0, 0])


def test_concat_order_is_kept_when_the_narrow_shard_comes_first():
    narrow = build_shard([[1]], [[2]], [[-0.5]], [0], [0], ["a"], ["b"], max_response_len=1, policy_version=0)
    c = RolloutBatch.concat([narrow, _hand_batch(version=0)])
    np.testing.assert_array_equal(c.input_ids[0], [1, 2, 0, 0, 0])
    np.testing.assert_array_equal(c.response_ids()[:2], [[2, 0, 0, 0], [9, 10, 0, 0]])


def test_concat_keeps_each_rows_policy_version():
    c = RolloutBatch.concat([_hand_batch(4), _hand_batch(3)])
    np.testing.assert_array_equal(c.versions, [4, 4, 4, 3, 3, 3])
    assert c.policy_version == 3  # the oldest
    np.testing.assert_array_equal(c.select([0, 5]).versions, [4, 3])


def test_select_rows():
    b = _hand_batch()
    s = b.select(np.array([2, 0]))
    np.testing.assert_array_equal(s.input_ids, b.input_ids[[2, 0]])
    np.testing.assert_array_equal(s.response_lens, [0, 2])
    np.testing.assert_array_equal(s.rollout_logp, b.rollout_logp[[2, 0]])
    np.testing.assert_array_equal(s.prompt_index, [1, 0])
    assert s.prompts == ["p1", "p0"] and s.responses == ["", "r0"]
    assert s.policy_version == 3 and s.meta == b.meta
    assert len(b.select([1])) == 1  # a plain list works too


def test_build_empty_shard():
    b = build_shard([], [], [], [], [], [], [], max_response_len=4, policy_version=0)
    assert len(b) == 0 and b.input_ids.shape == (0, 1) and b.rollout_logp.shape == (0, 4)


def test_model_inputs():
    ids, attn = model_inputs(_hand_batch())
    assert ids.dtype == torch.int64 and attn.dtype == torch.int64
    # attention covers prompt + response: lengths 5, 4, 2.
    torch.testing.assert_close(attn, torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]))
    assert ids[1, 3].item() == 13


def test_response_positions():
    # The logits at position p predict token p + 1, so response token t (at prompt_len + t)
    # is predicted by row prompt_len − 1 + t; clamped to [0, L − 2] = [0, 3] past a response.
    #   row 0: 2 3 4 5 → 2 3 3 3      row 1: 0 1 2 3      row 2: 1 2 3 4 → 1 2 3 3
    pos = response_positions(_hand_batch())
    torch.testing.assert_close(pos, torch.tensor([[2, 3, 3, 3], [0, 1, 2, 3], [1, 2, 3, 3]]))


def test_gather_response_2d_and_3d():
    b = _hand_batch()
    # per_position[b, p] = 10·b + p over L − 1 = 4 positions.
    per_pos = (10 * torch.arange(3)[:, None] + torch.arange(4)[None, :]).float()
    got = gather_response(per_pos, b)
    torch.testing.assert_close(got, torch.tensor([[2, 3, 3, 3], [10, 11, 12, 13], [21, 22, 23, 23]]).float())
    # 3-D (B, L − 1, V): every trailing slice is gathered at the same positions.
    per_pos3 = torch.stack([per_pos, per_pos + 100], dim=-1)  # (3, 4, 2)
    got3 = gather_response(per_pos3, b)
    assert got3.shape == (3, 4, 2)
    torch.testing.assert_close(got3[..., 0], got)
    torch.testing.assert_close(got3[..., 1], got + 100)


def test_gather_response_matches_a_causal_lm():
    # With "logits" that put all mass on the true next token, the gathered log-probs of the
    # response tokens are 0 (log 1) exactly on the response mask.
    b = _hand_batch()
    ids, _ = model_inputs(b)
    vocab = 16
    logits = torch.full((3, ids.shape[1] - 1, vocab), -1e4)
    logits.scatter_(2, ids[:, 1:, None], 0.0)  # position p predicts ids[p + 1]
    logp = torch.log_softmax(logits, -1)
    resp = torch.from_numpy(b.response_ids())
    got = gather_response(logp, b).gather(2, resp[..., None]).squeeze(-1)
    mask = torch.from_numpy(b.response_mask())
    torch.testing.assert_close(got * mask, torch.zeros(3, 4))
