"""`rlaif-ray dpo` end to end: 2 DeepSpeed workers run DPO on the tiny policy with 96 toy
pairs (hard AI labels) for 2 epochs; the implicit-reward accuracy rises above chance on the
training and held-out pairs, and the saved policy loads and reproduces the held-out number."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toy_labeled_pairs import write_labeled_toy_pairs


@pytest.mark.slow
def test_dpo_job(ray_local, tiny_models, repo_root, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif_ray.config import load_config
    from rlaif_ray.driver.preference import train_preference_model
    from rlaif_ray.preference_train import encode_dpo, make_pairs, read_pair_rows, sequence_logprobs, split_eval
    from rlaif_ray.prompts import formatter_for
    from rlaif_ray.run_dir import read_metrics

    data = write_labeled_toy_pairs(tmp_path / "labels", 96, seed=0)
    out = tmp_path / "dpo"
    cfg = load_config(repo_root / "configs" / "dpo-toy.yaml", [
        f"dpo.data={data}", f"dpo.output_dir={out}", f"model.policy={tiny_models['policy']}"], "dpo")
    summary = train_preference_model(cfg, "dpo", progress=False)
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1, 2] and summary["last"] == rows[-1]
    # Before training the policy is its reference: every implicit reward is 0.
    assert rows[0]["eval/reward_margin"] == pytest.approx(0.0, abs=1e-5)
    for r in rows[1:]:
        for k in ("train/loss", "train/reward_accuracy", "train/reward_margin", "train/chosen_reward",
                  "train/rejected_reward", "eval/loss", "eval/reward_accuracy", "eval/reward_margin"):
            assert math.isfinite(r[k]), (k, r)
    print("train reward accuracy:", [round(r["train/reward_accuracy"], 3) for r in rows[1:]],
          "held-out:", [round(r["eval/reward_accuracy"], 3) for r in rows],
          "held-out margin:", [round(r["eval/reward_margin"], 4) for r in rows])
    assert rows[-1]["train/reward_accuracy"] > 0.5 and rows[-1]["eval/reward_accuracy"] > 0.5
    assert rows[-1]["train/reward_margin"] > 0

    # The saved policy is an ordinary HF causal LM whose implicit rewards give the same accuracy.
    policy = AutoModelForCausalLM.from_pretrained(out).eval()
    reference = AutoModelForCausalLM.from_pretrained(tiny_models["policy"]).eval()
    tok = AutoTokenizer.from_pretrained(out)
    pairs, _ = make_pairs(read_pair_rows(str(data), "d"), "hard", "d")
    ev = pairs.select(split_eval(len(pairs), 0.2, seed=0)[1])
    fmt = formatter_for(tok, cfg.data, str(out))  # the prompt format DPO trained with
    pa, ra, _ = encode_dpo(fmt, ev.prompts, ev.responses_a, 128)
    pb, rb, _ = encode_dpo(fmt, ev.prompts, ev.responses_b, 128)
    with torch.no_grad():
        h = ((sequence_logprobs(policy, pa, ra) - sequence_logprobs(reference, pa, ra))
             - (sequence_logprobs(policy, pb, rb) - sequence_logprobs(reference, pb, rb))).numpy()
    assert float(np.mean(h > 0)) == pytest.approx(rows[-1]["eval/reward_accuracy"], abs=1e-6)
