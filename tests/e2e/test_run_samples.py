"""Samples of a real tiny run: 2 iterations write run.log_samples rows each to samples.jsonl
(finite rewards by source, KL, length), the same table to TensorBoard, and `rlaif-ray
samples` prints them."""

from __future__ import annotations

import json
import math

import pytest

from rlaif_ray.cli import main
from rlaif_ray.driver.run import train_run


@pytest.mark.slow
def test_two_iterations_write_four_samples_each(ray_local, make_config, tmp_path, capsys):
    cfg = make_config("run.iterations=2", "data.prompts_per_iteration=4", "ppo.minibatch_size=16")
    assert cfg.run.log_samples == 4
    run = tmp_path / "run"
    train_run(cfg, run, progress=False)
    rows = [json.loads(l) for l in (run / "samples.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1] * 4 + [2] * 4
    assert [r["policy_version"] for r in rows] == [0] * 4 + [1] * 4
    prompts = [json.loads(l) for l in (run / "prompts.jsonl").read_text().splitlines()]
    for r in rows:
        assert set(r["rewards"]) == {"labeler_direct", "ground_truth"}
        values = [r["reward"], r["kl"], *r["rewards"].values()]
        assert all(v is not None and math.isfinite(v) for v in values), r
        assert -1 <= r["rewards"]["labeler_direct"] <= 1 and r["reward"] == r["rewards"]["labeler_direct"]
        assert 0 <= r["response_tokens"] <= cfg.rollout.sampling.max_new_tokens
        assert r["prompt_index"] in prompts[r["iteration"] - 1]["positions"]
        assert 0 <= r["sample_index"] < cfg.rollout.sampling.samples_per_prompt

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    assert [e.step for e in acc.Tensors("samples/text_summary")] == [1, 2]

    assert main(["samples", str(run), "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert "iteration 1: 4 samples of policy version 0" in out and "iteration 2: 4 samples" in out
    print(out)
