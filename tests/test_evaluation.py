"""Evaluation and rejection-sampling helpers: best-of-n, summaries, report, curves, prompts,
the derived rejection-sampling config. Pure functions, hand-worked numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rlaif_ray.config import ConfigError, config_from_dict
from rlaif_ray.curves import curve_file_name, describe_metric, describe_runs, plot_curves, run_facts
from rlaif_ray.evaluation import (answer_seed, best_of_n, eval_prompt_texts, mean_se, render_report, shown_path,
                                  summarize_function, summarize_harmless, summarize_preferences)


def test_best_of_n_picks_the_argmax_per_prompt():
    # prompt 7: rows 0..2 rewards (0.1, 0.9, 0.9) → row 1 (tie goes to the earliest row);
    # prompt 3: rows 3..5 (nan, -0.5, -0.2) → row 5; prompt 4: row 6 invalid, row 7 nan → left out.
    prompt = np.array([7, 7, 7, 3, 3, 3, 4, 4])
    rewards = np.array([0.1, 0.9, 0.9, np.nan, -0.5, -0.2, 1.0, np.nan])
    valid = np.array([True] * 6 + [False, True])
    assert best_of_n(prompt, rewards, valid).tolist() == [1, 5]
    assert best_of_n(prompt, rewards).tolist() == [1, 5, 6]


def test_kept_mean_is_at_least_the_all_mean():
    rng = np.random.default_rng(0)
    prompt = np.repeat(np.arange(16), 4)
    rewards = rng.normal(size=64)
    best = best_of_n(prompt, rewards)
    assert len(best) == 16 and rewards[best].mean() >= rewards.mean()


def test_summarize_preferences_counts_and_interval():
    # p_a: 2 wins (0.9, 0.6), 1 tie (0.5), 1 loss (0.2) → win rate (2 + 0.5)/4 = 0.625.
    s = summarize_preferences([0.9, 0.6, 0.5, 0.2], p_ab=[0.8, 0.7, 0.5, 0.3], p_ba=[0.0, 0.2, 0.5, 0.9],
                              identical=[False, False, True, False], confidence=0.95)
    assert (s["wins"], s["ties"], s["losses"], s["n"], s["identical_answers"]) == (2, 1, 1, 4, 1)
    assert s["rate"] == pytest.approx(0.625)
    assert s["low"] < 0.625 < s["high"]
    assert s["mean_p_a"] == pytest.approx(0.55)
    # mean P(first preferred) = (mean(p_ab) + mean(p_ba))/2 = (0.575 + 0.4)/2
    assert s["p_first_mean"] == pytest.approx(0.4875)


def test_summaries_of_function_and_harmless():
    f = summarize_function("rule", [1.0, 0.0, -1.0], [0.0, 0.0, 0.0])
    # A mean 0, SE = s/√3 = 1/√3; paired diffs (1, 0, −1): same.
    assert f["a_mean"] == 0.0 and f["a_se"] == pytest.approx(1 / math.sqrt(3))
    assert f["diff"] == 0.0 and f["diff_se"] == pytest.approx(1 / math.sqrt(3))
    h = summarize_harmless([0.9, 0.4, 0.5, 0.7], [0.1, 0.2, 0.6, 0.3], threshold=0.5)
    assert (h["a"], h["b"]) == (0.75, 0.25)
    assert mean_se([2.0]) == (2.0, 0.0)


def _summary(**extra):
    s = {"policy_a": "runs/x/hf", "policy_b": "sft", "labeler": "judge", "seed": 0, "seconds": 3.0,
         "prompts": {"source": "toy", "n": 4, "distinct": 3, "truncated": 0},
         "sampling": {"temperature": 1.0},
         "answers": {"n_prompts": 4, "a_tokens_mean": 9.0, "b_tokens_mean": 8.5, "max_new_tokens": 24,
                     "a_at_length_limit": 0, "b_at_length_limit": 0},
         "win_rate": summarize_preferences([0.9, 0.8, 0.7, 0.6], [0.9] * 4, [0.1] * 4, [False] * 4, 0.95),
         "function_judge": None, "harmless": None, "run_dirs": [], "curves": []}
    s.update(extra)
    return s


def test_report_states_the_numbers_and_the_verdict():
    text = render_report(_summary())
    # 4 wins of 4: rate 1.0, Wilson 95% low = 4/(4 + 1.96²) ≈ 0.510 > 0.5.
    assert "**1.000**" in text and "[0.510, 1.000]" in text and "A is preferred over B" in text
    assert "`runs/x/hf`" in text and "(answers.jsonl)" in text and "3 distinct" in text
    f = summarize_function("toy.task:rule_score", [0.5, 0.5], [0.0, -0.5])
    h = {"classifier": "tox", "harmless_label": 1, **summarize_harmless([0.9, 0.1], [0.9, 0.9], 0.5)}
    curves = [{"metric": "reward/mean", "file": "curve-reward_mean.png", "runs": ["r"]},
              {"metric": "kl/mean", "note": "not logged by any of the runs"}]
    text = render_report(_summary(function_judge=f, harmless=h, run_dirs=["r"], curves=curves))
    assert "| A − B (paired) | +0.750" in text
    assert "- A: 0.500" in text and "- B: 1.000" in text
    assert "![reward/mean](curve-reward_mean.png)" in text and "`kl/mean`: not logged" in text
    assert "- sampling: temperature 1.0" in text


def test_report_names_where_b_came_from_and_counts_cut_off_answers():
    text = render_report(_summary(policy_b_from="model.policy"))
    assert "- **A** (eval.policy_a): `runs/x/hf`" in text
    assert "- **B** (model.policy, the initial policy): `sft`" in text
    assert "- no answer hit the length limit of 24 tokens (eval.sampling.max_new_tokens)" in text
    # A: 1 of 4 cut off (25%), B: 0 → over 10% of the answers: the report warns.
    answers = {"n_prompts": 4, "a_tokens_mean": 20.0, "b_tokens_mean": 8.5, "max_new_tokens": 24,
               "a_at_length_limit": 1, "b_at_length_limit": 0}
    text = render_report(_summary(answers=answers))
    assert "A 1 of 4 (25%), B 0 of 4 (0%)" in text and "raise eval.sampling.max_new_tokens" in text


def test_paths_are_shown_resolved_alike(tmp_path, monkeypatch):
    (tmp_path / "policy").mkdir()
    monkeypatch.chdir(tmp_path)
    assert shown_path("policy") == shown_path(str(tmp_path / "policy")) == str((tmp_path / "policy").resolve())
    assert shown_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"  # a hub name


def _run_with_config(path, sources, rows, max_new_tokens=24):
    path.mkdir(parents=True)
    cfg = {"reward": {"sources": sources}, "kl": {"estimator": "k1"},
           "rollout": {"sampling": {"max_new_tokens": max_new_tokens}}}
    (path / "config.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_curves_say_in_words_what_they_plot(tmp_path):
    labeler = {"kind": "labeler_direct", "weight": 1.0}
    truth = {"kind": "function", "function": "toy.task:rule_score", "name": "ground_truth", "weight": 0.0}
    rows = [{"iteration": i, "reward/mean": 0.1 * i, "kl/mean": 0.02 * i, "reward/ground_truth/mean": 0.0}
            for i in (1, 2)]
    run = _run_with_config(tmp_path / "a" / "run", [labeler, truth], rows)
    facts = run_facts(run)
    assert facts["sources"][1] == ("ground_truth", "the function toy.task:rule_score", 0.0)
    d = describe_metric("reward/mean", facts)
    assert d["title"] == "Reward: labeler_direct (the AI labeler's direct score, −1…1)"
    assert describe_metric("kl/mean", facts)["ylabel"] == "KL, nats per sequence"
    assert "limit, rollout.sampling.max_new_tokens, is 24" in describe_metric("response_length/mean", facts)["meaning"]
    assert "logged only (weight 0)" in describe_metric("reward/ground_truth/mean", facts)["meaning"]
    assert describe_metric("timing/rollout", facts)["ylabel"] == "seconds"
    # Two runs named alike, trained on different rewards: legends tell them apart, the title names neither.
    other = _run_with_config(tmp_path / "b" / "run", [{**labeler, "weight": 0.5}, {**truth, "weight": 0.5}], rows)
    assert [r["label"] for r in describe_runs([run, other])] == ["a/run", "b/run"]
    assert describe_runs([run, other])[1]["reward"] == "0.5 × labeler_direct + 0.5 × ground_truth"
    curves = plot_curves([run, other], ["reward/mean", "kl/mean"], tmp_path)
    assert curves[0]["title"] == "Reward: each run's own (see report.md)"
    text = render_report(_summary(run_dirs=[str(run), str(other)], runs=describe_runs([run, other]), curves=curves))
    assert "### KL(policy ‖ reference), nats per sequence" in text
    assert "- b/run: `" in text and "; reward: 0.5 × labeler_direct + 0.5 × ground_truth" in text
    assert "How far the policy has moved from the frozen reference" in text


def test_plot_curves_writes_pngs_from_metrics(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"iteration": i, "reward/mean": -0.4 + 0.1 * i, "kl/mean": None if i == 2 else 0.01 * i}
            for i in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_curves([run], ["reward/mean", "kl/mean", "missing/metric"], tmp_path)
    assert [c.get("file") for c in out] == ["curve-reward_mean.png", "curve-kl_mean.png", None]
    for name in ("curve-reward_mean.png", "curve-kl_mean.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert curve_file_name("reward/ground_truth/mean") == "curve-reward_ground_truth_mean.png"


def test_eval_prompts_come_from_the_file_and_a_short_file_is_refused(tmp_path):
    short = tmp_path / "short.jsonl"
    short.write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c"}\n')
    assert eval_prompt_texts(str(short), "prompt", "test", 2) == ["a", "b"]
    with pytest.raises(ConfigError, match="eval.num_prompts: 4 asked but .* only 3"):
        eval_prompt_texts(str(short), "prompt", "test", 4)


def test_answer_seeds_are_reproducible_and_per_side():
    assert answer_seed(0, 0, 5) == answer_seed(0, 0, 5)
    assert len({answer_seed(0, s, p) for s in (0, 1) for p in range(50)}) == 100


def _rejection(**sections):
    raw = {"model": {"policy": "p", "labeler": "l"}, "data": {"source": "s", "prompts_per_iteration": 4},
           "reward": {"sources": [{"kind": "labeler_direct"},
                                  {"kind": "function", "function": "toy.task:rule_score",
                                   "name": "ground_truth", "weight": 0.5}]},
           "rejection_sampling": {"minibatch_size": 4}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return config_from_dict(raw, "rs.yaml", "rejection-sampling")


def test_rejection_sampling_config_reads_the_training_fields():
    cfg = _rejection(run={"iterations": 2}, learner={"lr": 1e-3})
    assert (cfg.run.iterations, cfg.data.prompts_per_iteration, cfg.rollout.sampling.samples_per_prompt) == (2, 4, 4)
    assert (cfg.minibatch_size, cfg.learner.lr, cfg.uses_critic, cfg.max_staleness) == (4, 1e-3, False, 0)
    assert not hasattr(cfg, "ppo") and not hasattr(cfg, "reference")
    with pytest.raises(ConfigError, match="rejection_sampling.minibatch_size: 3 must divide"):
        _rejection(rejection_sampling={"minibatch_size": 3})
    with pytest.raises(ConfigError, match="divisible by learner.num_workers"):
        _rejection(data={"prompts_per_iteration": 9}, rejection_sampling={"minibatch_size": 3})
    with pytest.raises(ConfigError, match="best-of-n needs n ≥ 2, got 1"):
        _rejection(rollout={"sampling": {"samples_per_prompt": 1}})
    with pytest.raises(ConfigError, match="reward.sources: rejection sampling keeps the best"):
        _rejection(reward={"sources": [{"kind": "function", "function": "toy.task:rule_score"}]})
    with pytest.raises(ConfigError, match="reward.sources.1.kind: rejection sampling reads only labeler_direct"):
        _rejection(reward={"sources": [{"kind": "labeler_direct"}, {"kind": "reward_model", "model": "rm"}]})
    # The four fields it once repeated name the field that holds them now.
    with pytest.raises(ConfigError, match=r"rejection_sampling: rounds: write run.iterations instead"):
        _rejection(rejection_sampling={"rounds": 3})


def test_example_configs_validate(repo_root):
    from rlaif_ray.config import load_config

    ev = load_config(repo_root / "configs" / "eval-toy.yaml", verb="eval")
    assert ev.eval.num_prompts >= 64 and ev.eval.function_judge == "toy.task:rule_score"
    rs = load_config(repo_root / "configs" / "rejection-sampling-toy.yaml", verb="rejection-sampling")
    assert rs.rollout.sampling.samples_per_prompt == 4 and rs.data.prompts_per_iteration == 16
    assert (rs.run.iterations, rs.learner.lr, rs.minibatch_size) == (6, 5e-4, 8)


def test_cli_eval_fails_fast_naming_the_field(repo_root, tmp_path, capsys):
    from rlaif_ray.cli import main

    cfg = str(repo_root / "configs" / "eval-toy.yaml")
    assert main(["eval", "--config", cfg, "--set", "eval.policy_a=null"]) == 2
    assert "eval.policy_a: required" in capsys.readouterr().err
    # A config of another verb says so in one line.
    assert main(["eval", "--config", str(repo_root / "configs" / "local.yaml")]) == 2
    assert capsys.readouterr().err.endswith("eval: required; this is a config of `rlaif-ray train` "
                                            "(`rlaif-ray config schema eval` lists what eval reads)\n")
    assert main(["eval", "--config", cfg, "--set", f"eval.policy_a={tmp_path}/nope"]) == 2
    assert "eval.policy_a: model path" in capsys.readouterr().err
    assert main(["rejection-sampling", "--config", str(repo_root / "configs" / "rejection-sampling-toy.yaml"),
                 "--set", "rejection_sampling.minibatch_size=5"]) == 2
    assert "rejection_sampling.minibatch_size: 5 must divide" in capsys.readouterr().err
