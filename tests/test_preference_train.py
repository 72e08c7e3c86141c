"""Preference pairs for reward-model training and DPO: labels, splits, batching, tokenization,
the loss calls, and the config sections (pure; the tiny models only where a tokenizer or a
real forward is needed)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlaif_ray.config import ConfigError, DPOSection, RewardModelTrainSection, RewardSource, load_config
from rlaif_ray.data import DataError
from rlaif_ray.prompts import PromptFormatter
from rlaif_ray.preference_train import (encode_dpo, encode_rm, epoch_batches, make_pairs, merge_weighted, pad_right,
                                        rank_rows, read_pair_rows, rm_pair_loss, rm_text, sequence_logprobs,
                                        split_eval)

ROWS = [
    {"context": "c0", "response_a": "a0", "response_b": "b0", "p_a": 0.8, "human_choice": 0},
    {"context": "c1", "response_a": "a1", "response_b": "b1", "p_a": 0.3, "human_choice": 1},
    {"context": "c2", "response_a": "a2", "response_b": "b2", "p_a": 0.5, "human_choice": None},
    {"context": "c3", "response_a": "a3", "response_b": "b3", "p_a": 0.1, "human_choice": 0},
]


def test_soft_labels_keep_order_and_p_a():
    pairs, stats = make_pairs(ROWS, "soft", "d")
    assert pairs.responses_a == ["a0", "a1", "a2", "a3"]
    np.testing.assert_allclose(pairs.target_a, [0.8, 0.3, 0.5, 0.1])
    assert stats == {"pairs/records": 4, "pairs/dropped": 0}


def test_hard_labels_put_the_winner_first_and_drop_ties():
    pairs, stats = make_pairs(ROWS, "hard", "d")
    # p_a 0.8 → A; 0.3 → B; 0.5 tie dropped; 0.1 → B
    assert (pairs.responses_a, pairs.responses_b) == (["a0", "b1", "b3"], ["b0", "a1", "a3"])
    assert pairs.target_a is None and pairs.rows.tolist() == [0, 1, 3]
    assert stats["pairs/dropped"] == 1


def test_human_labels_follow_human_choice():
    pairs, _ = make_pairs(ROWS, "human", "d")
    # human_choice 0 → A, 1 → B, None dropped, 0 → A (even where the AI disagrees)
    assert pairs.responses_a == ["a0", "b1", "a3"] and pairs.rows.tolist() == [0, 1, 3]


@pytest.mark.parametrize("row,labels,message", [
    ({"context": "c", "response_a": "a", "p_a": 0.2}, "soft", "record 0: column 'response_b' must be text (missing"),
    ({"context": "c", "response_a": "a", "response_b": 3, "p_a": 0.2}, "soft", "'response_b' must be text (int"),
    ({"context": "c", "response_a": "a", "response_b": "b", "p_a": 1.5}, "soft", "p_a must be a probability in [0, 1], got 1.5"),
    ({"context": "c", "response_a": "a", "response_b": "b", "p_a": float("nan")}, "hard", "p_a must be a probability"),
    ({"context": "c", "response_a": "a", "response_b": "b", "human_choice": 0}, "soft", "labels soft need column 'p_a'"),
    ({"context": "c", "response_a": "a", "response_b": "b", "human_choice": 2}, "human", "human_choice must be 0 (A), 1 (B)"),
])
def test_bad_records_name_the_record_and_field(row, labels, message):
    with pytest.raises(DataError, match="^dpo.data x: record 0: ") as err:
        make_pairs([row], labels, "dpo.data x")
    assert message in str(err.value)


def test_all_dropped_is_an_error():
    with pytest.raises(DataError, match="no usable pairs with labels human"):
        make_pairs([dict(ROWS[2])], "human", "d")


def test_read_pair_rows_parquet_folder_and_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS[:2]), tmp_path / "shards" / "shard-00000.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[2:]), tmp_path / "shards" / "shard-00001.parquet")
    assert [r["context"] for r in read_pair_rows(str(tmp_path / "shards"), "f")] == ["c0", "c1", "c2", "c3"]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert read_pair_rows(str(tmp_path / "p.jsonl"), "f")[3]["p_a"] == 0.1
    (tmp_path / "bad.jsonl").write_text('{"context": "c"}\n{oops\n')
    with pytest.raises(DataError, match="f: .*bad.jsonl line 2: not valid JSON"):
        read_pair_rows(str(tmp_path / "bad.jsonl"), "f")
    with pytest.raises(DataError, match="f: .*nowhere: no such file"):
        read_pair_rows(str(tmp_path / "nowhere"), "f")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no \\*.parquet shards"):
        read_pair_rows(str(tmp_path / "empty"), "f")


def test_split_eval_is_seeded_disjoint_and_sized():
    tr, ev = split_eval(96, 0.2, seed=0)
    assert len(ev) == 19 and len(tr) == 77  # round(96 · 0.2) = round(19.2) = 19
    assert set(tr).isdisjoint(ev) and set(tr) | set(ev) == set(range(96))
    assert (split_eval(96, 0.2, 0)[1] == ev).all() and not (split_eval(96, 0.2, 1)[1] == ev).all()
    assert len(split_eval(10, 0.01, 0)[1]) == 1  # any non-zero fraction holds out at least one
    assert len(split_eval(10, 0.0, 0)[1]) == 0
    with pytest.raises(DataError, match="leaves none to train on"):
        split_eval(1, 0.5, 0)


def test_epoch_batches_split_the_same_batch_over_ranks():
    n, bs, world = 10, 4, 2
    r0 = epoch_batches(n, bs, seed=3, epoch=1, rank=0, world=world)
    r1 = epoch_batches(n, bs, seed=3, epoch=1, rank=1, world=world)
    assert len(r0) == len(r1) == 2  # 10 // 4: the last 2 rows wait for another epoch
    perm = np.random.default_rng([3, 1]).permutation(n)
    for s in range(2):
        assert len(r0[s]) == len(r1[s]) == 2 and set(r0[s]).isdisjoint(r1[s])
        assert set(r0[s]) | set(r1[s]) == set(perm[4 * s: 4 * s + 4])
    assert [b.tolist() for b in epoch_batches(n, bs, 3, 2, 0, world)] != [b.tolist() for b in r0]


def test_rank_rows_and_merge_weighted():
    assert [rank_rows(5, r, 2).tolist() for r in range(2)] == [[0, 1, 2], [3, 4]]
    # (3·0.5 + 1·1.0) / 4 = 0.625 ; a rank with no rows is skipped
    merged = merge_weighted([{"n": 3, "acc": 0.5}, {"n": 1, "acc": 1.0}, {"n": 0}])
    assert merged == {"acc": 0.625}


def test_pad_right():
    ids, attn = pad_right([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and attn.tolist() == [[1, 1, 1], [1, 0, 0]]


class LastTokenScore(torch.nn.Module):
    """Scores a sequence by the id of its last non-pad token (HF sequence-classification pooling)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, input_ids, attention_mask):
        last = attention_mask.sum(1) - 1
        return SimpleNamespace(logits=(self.w * input_ids[torch.arange(len(input_ids)), last].float())[:, None])


def test_rm_pair_loss_soft_and_hard_by_hand():
    model = LastTokenScore()
    a, b = [[1, 3], [1, 2, 4]], [[1, 5], [2]]  # scores a = (3, 4), b = (5, 2)
    loss, st = rm_pair_loss(model, a, b, 0, np.array([0.25, 1.0], np.float32), None)
    # pair 1: h = 3 − 5 = −2 → −[0.25·log σ(−2) + 0.75·log σ(2)] = 0.25·2.1269 + 0.75·0.1269 = 0.6269
    # pair 2: h = 4 − 2 = 2, t = 1 → −log σ(2) = 0.1269 ;  mean 0.3769
    assert loss.item() == pytest.approx(0.37693, abs=1e-4)
    assert st["accuracy"].item() == 1.0  # t 0.25 → B and h < 0; t 1 → A and h > 0
    loss, st = rm_pair_loss(model, a, b, 0, None, 1.0)
    # hard, margin 1: −log σ(−2 − 1) = 3.0486, −log σ(2 − 1) = 0.3133 → mean 1.6809
    assert loss.item() == pytest.approx(1.68095, abs=1e-4)
    assert st["accuracy"].item() == 0.5 and st["margin_mean"].item() == 0.0


def test_encode_rm_template_and_left_truncation(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["reward_backbone"])
    assert rm_text("Tell me about the sea.", " The sea is warm.") == "Tell me about the sea.\n The sea is warm."
    ids, cut = encode_rm(tok, ["Tell me about the sea."], [" The sea is warm."], max_tokens=512)
    assert cut == 0 and ids[0] == tok("Tell me about the sea.\n The sea is warm.")["input_ids"]
    short, cut = encode_rm(tok, ["Tell me about the sea."], [" The sea is warm."], max_tokens=6)
    assert cut == 1 and len(short[0]) == 6
    assert short[0][0] == tok.bos_token_id and short[0][1:] == ids[0][-5:]  # bos kept, the start of the text cut


def test_encode_dpo_keeps_bos_and_response(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["policy"])
    p_full = tok("Tell me about the big old sea.")["input_ids"]
    r_full = tok(" The sea is warm.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    fmt = PromptFormatter(tok, chat_template=False, system_prompt=None, model_name="policy")
    p, r, cut = encode_dpo(fmt, ["Tell me about the big old sea."], [" The sea is warm."], max_tokens=512)
    assert (p[0], r[0], cut) == (p_full, r_full, 0)
    budget = len(r_full) + 3
    p, r, cut = encode_dpo(fmt, ["Tell me about the big old sea."], [" The sea is warm."], max_tokens=budget)
    assert cut == 1 and r[0] == r_full and p[0] == [tok.bos_token_id] + p_full[-2:]
    assert len(p[0]) + len(r[0]) == budget


def test_sequence_logprobs_match_a_direct_forward(tiny_models):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models["policy"]).eval()
    prompts, responses = [[1, 40, 41, 42], [1, 50]], [[60, 61, 2], [70, 2]]
    with torch.no_grad():
        got = sequence_logprobs(model, prompts, responses)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids = torch.tensor([p + r])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            want = sum(logp[len(p) - 1 + t, tok].item() for t, tok in enumerate(r))
            assert got[i].item() == pytest.approx(want, abs=1e-4)


# --------------------------------------------------------------------------- config


def test_sections_validate():
    with pytest.raises(ValueError, match="margin: a margin needs labels hard or human"):
        RewardModelTrainSection(data="x", margin=1.0)
    assert RewardModelTrainSection(data="x", labels="hard", margin=1.0).margin == 1.0
    with pytest.raises(ValueError, match="batch_size: 10 must be divisible by num_workers"):
        DPOSection(data="x", batch_size=10, num_workers=4)
    assert DPOSection(data="x").labels == "hard" and RewardModelTrainSection(data="x").labels == "soft"


def test_reward_sources_need_a_model_and_label():
    with pytest.raises(ValueError, match="model: kind reward_model needs model"):
        RewardSource(kind="reward_model")
    with pytest.raises(ValueError, match="class_label: kind classifier needs class_label"):
        RewardSource(kind="classifier", model="m")
    s = RewardSource(kind="classifier", model="m", class_label="not_hate", output="prob")
    assert (s.label, s.class_label) == ("classifier", "not_hate")
    assert RewardSource(kind="classifier", model="m", class_label=1).class_label == 1


def test_config_errors_name_the_field(repo_root):
    with pytest.raises(ConfigError, match="reward.sources.1: model: kind reward_model needs model"):
        load_config(repo_root / "configs" / "local.yaml", ["reward.sources=[{kind: labeler_direct}, {kind: reward_model}]"])
    with pytest.raises(ConfigError, match="dpo.eval_fraction"):
        load_config(repo_root / "configs" / "dpo-toy.yaml", ["dpo.eval_fraction=1.5"], "dpo")
    with pytest.raises(ConfigError, match=r"(?m)^reward_model_train.data: Field required$"):
        load_config(repo_root / "configs" / "train-rm-toy.yaml", ["reward_model_train={epochs: 1}"], "train-rm")


def test_example_configs_load(repo_root):
    rm = load_config(repo_root / "configs" / "train-rm-toy.yaml", [], "train-rm")
    assert rm.reward_model_train.labels == "soft" and list(type(rm).model_fields) == ["run", "ray", "model",
                                                                                      "reward_model_train"]
    dpo = load_config(repo_root / "configs" / "dpo-toy.yaml", ["dpo.beta=0.2"], "dpo")
    assert dpo.dpo.beta == 0.2 and math.isclose(dpo.dpo.lr, 1e-4)


def test_reward_model_label_resolution_and_outputs():
    from actors.reward_model import resolve_class_label, rewards_from_logits

    clf = RewardSource(kind="classifier", model="m", class_label="bright")
    assert resolve_class_label(clf, 2, {"dull": 0, "bright": 1}, "reward.sources.2") == 1
    with pytest.raises(ValueError, match="reward.sources.2.class_label: 'shiny' is not a label of m"):
        resolve_class_label(clf.model_copy(update={"class_label": "shiny"}), 2, {"dull": 0, "bright": 1}, "reward.sources.2")
    with pytest.raises(ValueError, match="class_label: 3 is out of range"):
        resolve_class_label(clf.model_copy(update={"class_label": 3}), 2, {}, "reward.sources.2")
    with pytest.raises(ValueError, match="needs num_labels=1"):
        resolve_class_label(RewardSource(kind="reward_model", model="m"), 2, {}, "reward.sources.1")
    z = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])
    assert rewards_from_logits(z, 1, "logit").tolist() == pytest.approx([math.log(3.0), 2.0])
    # softmax([0, ln 3]) = (1/4, 3/4); softmax([2, 2]) = (1/2, 1/2)
    assert rewards_from_logits(z, 1, "prob").tolist() == pytest.approx([0.75, 0.5])
    assert rewards_from_logits(torch.tensor([[0.0]]), 0, "prob").tolist() == [0.5]  # σ(0), one label
