"""`rlaif-ray train-rm` end to end: 2 DeepSpeed workers train the tiny reward backbone on 96
toy pairs (soft AI labels) for 2 epochs; the held-out pair accuracy is reported and beats
chance, and the saved folder loads as a sequence-classification model that reproduces it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from toy_labeled_pairs import write_labeled_toy_pairs


@pytest.mark.slow
def test_train_rm_job(ray_local, tiny_models, repo_root, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rlaif_ray.cli import main
    from rlaif_ray.preference_train import encode_rm, make_pairs, read_pair_rows, rm_scores, split_eval

    data = write_labeled_toy_pairs(tmp_path / "labels", 96, seed=0)
    out = tmp_path / "rm"
    rc = main(["train-rm", "--config", str(repo_root / "configs" / "train-rm-toy.yaml"), "--no-progress",
               "--set", f"reward_model_train.data={data}", "--set", f"reward_model_train.output_dir={out}",
               "--set", f"reward_model_train.backbone={tiny_models['reward_backbone']}",
               "--set", f"model.policy={tiny_models['policy']}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed, printed

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[0]["pairs/train"] == 77 and rows[0]["pairs/eval"] == 19
    for r in rows[1:]:
        for k in ("train/loss", "train/accuracy", "eval/loss", "eval/accuracy"):
            assert math.isfinite(r[k]), (k, r)
    print("held-out accuracy by epoch:", [round(r["eval/accuracy"], 3) for r in rows],
          "train loss:", [round(r["train/loss"], 3) for r in rows[1:]])
    assert rows[-1]["eval/accuracy"] > 0.5
    assert rows[-1]["train/loss"] < rows[1]["train/loss"]

    # The saved folder is an ordinary HF sequence-classification model with the trained weights.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    pairs, _ = make_pairs(read_pair_rows(str(data), "d"), "soft", "d")
    ev = pairs.select(split_eval(len(pairs), 0.2, seed=0)[1])
    a, _ = encode_rm(tok, ev.prompts, ev.responses_a, 128)
    b, _ = encode_rm(tok, ev.prompts, ev.responses_b, 128)
    with torch.no_grad():
        h = (rm_scores(model, a, tok.pad_token_id) - rm_scores(model, b, tok.pad_token_id)).numpy()
    accuracy = float(np.mean((h > 0) == (ev.target_a > 0.5)))
    assert accuracy == pytest.approx(rows[-1]["eval/accuracy"], abs=1e-6)
