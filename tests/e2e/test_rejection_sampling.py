"""Rejection sampling end to end: 2 rounds of 4 prompts × 4 samples with real rollout engines,
the real AI labeler and DeepSpeed learners; the kept samples must score at least the mean of
all samples every round, and the exported policy must load with from_pretrained."""

from __future__ import annotations

import math

import pytest
import torch

from rlaif_ray.driver.rejection import rejection_sampling_run
from rlaif_ray.modeling import load_causal_lm, load_tokenizer
from rlaif_ray.run_dir import read_metrics


@pytest.mark.slow
def test_two_rounds_keep_the_best_and_export(warm_roles, make_config, tiny_models, tmp_path):
    out = tmp_path / "rs"
    cfg = make_config("run.iterations=2", "rollout.sampling.samples_per_prompt=4", "data.prompts_per_iteration=4",
                      "rejection_sampling.minibatch_size=4", "rejection_sampling.sft_epochs=1", "learner.lr=5.0e-4",
                      "learner.num_workers=1",
                      f"rejection_sampling.output_dir={out}", verb="rejection-sampling")
    summary = rejection_sampling_run(cfg, progress=False, warm=warm_roles)
    rows = read_metrics(out)
    assert [r["round"] for r in rows] == [1, 2] and [r["policy_version"] for r in rows] == [1, 2]
    for r in rows:
        print({k: r[k] for k in ("round", "reward/mean", "reward/kept_mean", "reward/ground_truth/mean",
                                 "reward/ground_truth/kept_mean", "sft/loss")})
        assert (r["data/samples"], r["data/kept"], r["sft/steps"]) == (16, 4, 1)
        assert r["reward/kept_mean"] >= r["reward/mean"], r
        assert math.isfinite(r["sft/loss"]) and r["sft/loss"] > 0
        assert r.get("sync/max_logprob_diff", 0.0) <= 1e-4, r  # absent when sync.probe_every skips it
    assert summary["rounds"] == 2

    hf = out / "final" / "hf"
    policy = load_causal_lm(str(hf))
    load_tokenizer(str(hf))
    initial = load_causal_lm(str(tiny_models["policy"]))
    moved = [not torch.equal(p, q) for p, q in zip(policy.state_dict().values(), initial.state_dict().values())]
    assert any(moved)  # the SFT steps changed the weights that were exported
