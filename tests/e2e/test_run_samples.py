"""Samples of a real tiny run (the embedded default, tests/e2e/conftest.py): every iteration
writes run.log_samples rows to samples.jsonl (finite rewards by source, KL, length), the same
table to TensorBoard, and `rlaif-ray samples` prints them."""

from __future__ import annotations

import json
import math

import pytest

from rlaif_ray.cli import main


@pytest.mark.slow
def test_every_iteration_writes_four_samples(default_run, capsys):
    cfg, run, _ = default_run
    n = cfg.run.iterations
    assert cfg.run.log_samples == 4 and n >= 2
    rows = [json.loads(l) for l in (run / "samples.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [i for i in range(1, n + 1) for _ in range(4)]
    assert [r["policy_version"] for r in rows] == [i for i in range(n) for _ in range(4)]
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
    assert [e.step for e in acc.Tensors("samples/text_summary")] == list(range(1, n + 1))

    assert main(["samples", str(run), "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert f"iteration {n - 1}: 4 samples of policy version {n - 2}" in out and f"iteration {n}: 4 samples" in out
    print(out)
