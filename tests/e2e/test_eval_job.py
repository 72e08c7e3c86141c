"""The evaluation job end to end: the tiny policy against itself on 16 held-out toy prompts,
real vLLM engines and the real AI labeler; the win rate must be ≈ 0.5 within its interval,
and report.md, eval.json, answers.jsonl and the curve PNGs must be written."""

from __future__ import annotations

import json

import pytest

from rlaif_ray.config import ConfigError
from rlaif_ray.driver.evaluate import evaluate
from toy.task import write_toy_prompts_jsonl


def _fake_run_dir(path):
    """A run dir with 3 metrics rows (fake data; the plotting is real)."""
    path.mkdir()
    rows = [{"iteration": i, "reward/mean": -0.4 + 0.2 * i, "kl/mean": 0.01 * i, "response_length/mean": 10.0 + i}
            for i in (1, 2, 3)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tiny_classifier(policy, out):
    """A 2-label sequence classifier with the policy's shape and tokenizer (random head)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    conf = AutoConfig.from_pretrained(policy)
    conf.num_labels = 2
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(conf).save_pretrained(out)
    AutoTokenizer.from_pretrained(policy).save_pretrained(out)
    return out


@pytest.mark.slow
def test_policy_against_itself_is_a_coin_flip(ray_local, make_config, tiny_models, tmp_path):
    out = tmp_path / "eval"
    run = _fake_run_dir(tmp_path / "run")
    classifier = _tiny_classifier(tiny_models["policy"], tmp_path / "classifier")
    held_out = write_toy_prompts_jsonl(tmp_path / "prompts-heldout.jsonl", 16, seed=0, split="heldout")
    cfg = make_config(
        f"eval.policy_a={tiny_models['policy']}", f"eval.prompts={held_out}", "eval.num_prompts=16",
        "eval.sampling.max_new_tokens=24",
        "eval.function_judge=toy.task:rule_score", f"eval.run_dirs=[{run}]", f"eval.output_dir={out}",
        "eval.curves=[reward/mean, kl/mean, response_length/mean]",
        f"eval.harmless={{classifier: {classifier}, harmless_label: 1, threshold: 0.5}}", verb="eval")
    s = evaluate(cfg, progress=False)
    w = s["win_rate"]
    print(f"win rate {w['rate']:.3f} [{w['low']:.3f}, {w['high']:.3f}], identical {w['identical_answers']}, "
          f"rule A {s['function_judge']['a_mean']:+.3f} B {s['function_judge']['b_mean']:+.3f}")
    assert w["n"] == 16 and w["wins"] + w["ties"] + w["losses"] == 16
    assert w["low"] <= 0.5 <= w["high"]
    assert abs(w["rate"] - 0.5) <= 0.25
    assert w["identical_answers"] < 16           # A and B draw their answers independently
    assert 0.3 < w["p_first_mean"] < 0.7
    f = s["function_judge"]
    assert -1 <= f["a_mean"] <= 1 and -1 <= f["b_mean"] <= 1
    assert 0 <= s["harmless"]["a"] <= 1 and 0 <= s["harmless"]["b"] <= 1

    report = (out / "report.md").read_text()
    assert f"{w['rate']:.3f}" in report and f"[{w['low']:.3f}, {w['high']:.3f}]" in report
    for c in s["curves"]:
        assert (out / c["file"]).read_bytes()[:4] == b"\x89PNG", c
        assert f"]({c['file']})" in report
    assert [c["metric"] for c in s["curves"]] == ["reward/mean", "kl/mean", "response_length/mean"]
    assert json.loads((out / "eval.json").read_text())["win_rate"] == w
    answers = [json.loads(l) for l in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 16 and all(0 <= a["p_a"] <= 1 for a in answers)

    with pytest.raises(ConfigError, match="eval.output_dir: .* already holds an evaluation"):
        evaluate(cfg, progress=False)
