"""Sequence-classification reward sources in PPO: a reward-model actor scores exactly what
the HF model gives on "prompt\\nresponse", and a 2-iteration PPO run combines labeler_direct
(0.5) + reward_model (0.5) + a classifier (weight 0, logged) with every per-source metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import ray
import torch


def _save_seq_classifier(src, out, **kw):
    """A fresh sequence-classification model on a tiny causal-LM body (seeded head), saved to out."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, **kw)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def scorer_models(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    rm = _save_seq_classifier(tiny_models["reward_backbone"], root / "rm", num_labels=1)
    clf = _save_seq_classifier(tiny_models["policy"], root / "clf", num_labels=2,
                               id2label={0: "dull", 1: "bright"}, label2id={"dull": 0, "bright": 1})
    return {"rm": str(rm), "clf": str(clf)}


def _sources(m):
    return (f"reward.sources=[{{kind: labeler_direct, weight: 0.5}}, "
            f"{{kind: reward_model, model: {m['rm']}, weight: 0.5, batch_size: 5}}, "
            f"{{kind: classifier, model: {m['clf']}, class_label: bright, output: prob, weight: 0, name: brightness}}]")


@pytest.mark.slow
def test_scorer_matches_hf(ray_local, make_config, scorer_models, tiny_models):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from actors.reward_model import RewardModelActor
    from rlaif_ray.batch import build_shard

    cfg = make_config(_sources(scorer_models))
    tok = AutoTokenizer.from_pretrained(tiny_models["policy"])
    prompts = ["Tell me about the sea.", "Describe the garden.", "Describe the city."]
    responses = [" The sea is warm and sunny.", " It is a dark garden with a cold wind.", ""]
    p_ids = [tok(p)["input_ids"] for p in prompts]
    r_ids = [tok(r, add_special_tokens=False)["input_ids"] for r in responses]
    shard = build_shard(p_ids, r_ids, [[0.0] * len(r) for r in r_ids], [0, 1, 2], [0, 0, 0], prompts, responses,
                        max(map(len, r_ids)), 0)
    rm = ray.remote(RewardModelActor).remote(cfg, 1, 0)
    clf = ray.remote(RewardModelActor).remote(cfg, 2, 0)
    refs = [ray.put(shard)]
    (rm_r, _), (clf_r, stats) = ray.get(rm.scores.remote(refs)), ray.get(clf.scores.remote(refs))
    assert stats["actor"] == "brightness-0"
    for path, got, pick in ((scorer_models["rm"], rm_r, lambda z: z[:, 0]),
                            (scorer_models["clf"], clf_r, lambda z: torch.softmax(z, -1)[:, 1])):
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        with torch.no_grad():  # one text at a time: no padding involved
            want = [pick(model(**tok(p + "\n" + r, return_tensors="pt")).logits)[0].item()
                    for p, r in zip(prompts, responses)]
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert ((clf_r >= 0) & (clf_r <= 1)).all()


@pytest.mark.slow
def test_ppo_with_reward_model_and_classifier_sources(warm_roles, make_config, scorer_models, tmp_path):
    from rlaif_ray.driver.run import train_run
    from rlaif_ray.run_dir import read_metrics

    cfg = make_config("run.iterations=2", "data.prompts_per_iteration=8", "ppo.minibatch_size=16",
                      "rollout.num_actors=1", _sources(scorer_models))
    train_run(cfg, tmp_path / "run", progress=False, warm=warm_roles)
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 2
    for row in rows:
        for name in ("labeler_direct", "reward_model", "brightness"):
            for stat in ("mean", "std"):
                v = row[f"reward/{name}/{stat}"]
                assert v is not None and math.isfinite(v), (name, stat, row)
        for name in ("reward_model", "brightness"):
            assert row[f"timing/reward/{name}"] > 0
        assert 0 <= row["reward/brightness/mean"] <= 1
        # r = 0.5·labeler + 0.5·rm (the classifier has weight 0): the means add up the same way
        want = 0.5 * row["reward/labeler_direct/mean"] + 0.5 * row["reward/reward_model/mean"]
        assert row["reward/mean"] == pytest.approx(want, abs=1e-5)
        assert math.isfinite(row["loss/policy"]) and math.isfinite(row["kl/mean"])
    print({k: round(v, 4) for k, v in rows[-1].items() if k.startswith(("reward/", "timing/reward"))})
