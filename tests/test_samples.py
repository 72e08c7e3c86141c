"""Samples a person reads: the seeded choice, the rows the learner builds, samples.jsonl read
back and printed (`rlaif-ray samples`), the TensorBoard text. Hand-worked numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlaif_ray.batch import build_shard
from rlaif_ray.cli import main
from rlaif_ray.config import load_config
from rlaif_ray.experience import build_experience, choose_samples, display_samples
from rlaif_ray.rewards import combine_rewards
from rlaif_ray.run_dir import RunDirError
from rlaif_ray.samples import format_samples, read_samples, samples_markdown, select_iterations

PAD = 9.0  # garbage in padded logprob columns: must not reach the KL shown


def test_choice_is_seeded_by_run_seed_and_iteration():
    a = choose_samples(32, 4, seed=0, iteration=3)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 4 and a.max() < 32
    assert choose_samples(32, 4, seed=0, iteration=3).tolist() == a.tolist()  # a rerun or resume: same rows
    picks = {tuple(choose_samples(32, 4, seed=0, iteration=i)) for i in range(1, 11)}
    assert len(picks) > 5                                                       # iterations differ
    assert choose_samples(32, 4, seed=1, iteration=3).tolist() != a.tolist()
    assert choose_samples(32, 0, seed=0, iteration=3).size == 0                 # log_samples 0: none
    assert choose_samples(3, 4, seed=0, iteration=1).tolist() == [0, 1, 2]      # k > rows: every row


def _experience(repo_root, scores, *overrides):
    """One prompt, 4 samples with responses of 2, 1, 3, 0 tokens (T = 3).

    old_logp − ref_logp (k1) per response token (P = padding):
      row 0: [-1.0, -2.0, P] − [-1.5, -1.0, P] = [0.5, -1.0]        Σ = -0.5
      row 1: [-0.5, P, P]    − [-1.0, P, P]    = [0.5]              Σ =  0.5
      row 2: [-1, -1, -1]    − [-2, -1, -0.5]  = [1, 0, -0.5]       Σ =  0.5
      row 3: empty response                                        Σ =  0
    """
    cfg = load_config(repo_root / "configs/local.yaml", ["ppo.algorithm=grpo", *overrides])
    lens = (2, 1, 3, 0)
    batch = build_shard(prompt_ids=[[1, 2]] * 4, response_ids=[list(range(10, 10 + n)) for n in lens],
                        response_logp=[[-0.5] * n for n in lens], prompt_index=[7] * 4, sample_index=[0, 1, 2, 3],
                        prompts=["p"] * 4, responses=["a b", "c", "d e f", ""], max_response_len=3, policy_version=5)
    old = np.array([[-1.0, -2.0, PAD], [-0.5, PAD, PAD], [-1.0, -1.0, -1.0], [PAD, PAD, PAD]], np.float32)
    ref = np.array([[-1.5, -1.0, -PAD], [-1.0, -PAD, PAD], [-2.0, -1.0, -0.5], [-PAD, PAD, 0.0]], np.float32)
    per_source = {"labeler_direct": np.asarray(scores, np.float32),
                  "ground_truth": np.array([1.0, 0.0, -1.0, 0.5], np.float32)}
    total, source_stats = combine_rewards(cfg.reward.sources, per_source)
    exp, _ = build_experience(cfg, batch, total, source_stats, ref, old, None, np.ones((4, 3), np.float32), 0.1)
    return cfg, exp, per_source, total


def test_display_samples_carry_rewards_by_source_kl_and_length(repo_root):
    # local.yaml: labeler_direct weight 1, ground_truth weight 0 → combined reward = labeler score.
    # Row 1's labeler score is NaN: its row is dropped from the update, but still shown, with
    # reward null and its KL over the response (0.5), not the update mask's 0.
    cfg, exp, per_source, total = _experience(repo_root, [0.25, np.nan, -0.75, 0.5])
    rows = display_samples(cfg, exp, per_source, total, iteration=3)   # log_samples 4 of 4 rows: all
    assert [r["sample_index"] for r in rows] == [0, 1, 2, 3]
    assert [r["kl"] for r in rows] == pytest.approx([-0.5, 0.5, 0.5, 0.0])
    assert [r["response_tokens"] for r in rows] == [2, 1, 3, 0]
    assert [r["reward"] for r in rows] == [0.25, None, -0.75, 0.5]
    assert rows[1]["rewards"] == {"labeler_direct": None, "ground_truth": 0.0}
    assert rows[2]["rewards"] == {"labeler_direct": -0.75, "ground_truth": -1.0}
    assert (rows[0]["iteration"], rows[0]["policy_version"], rows[0]["prompt_index"]) == (3, 5, 7)
    assert rows[2]["response"] == "d e f" and rows[3]["response"] == ""
    json.dumps(rows, allow_nan=False)  # valid JSON: no NaN

    # k3 = exp(−d) − 1 + d per token, d = old − ref:
    #   row 0: d = (0.5, −1.0)     → 0.106531 + 0.718282 = 0.824812
    #   row 1: d = 0.5             → 0.106531
    #   row 2: d = (1, 0, −0.5)    → 0.367879 + 0 + 0.148721 = 0.516600
    cfg, exp, per_source, total = _experience(repo_root, [0.25, 0.5, -0.75, 0.5], "kl.estimator=k3")
    rows = display_samples(cfg, exp, per_source, total, iteration=3)
    assert [r["kl"] for r in rows] == pytest.approx([0.824812, 0.106531, 0.516600, 0.0], abs=1e-5)
    cfg, exp, per_source, total = _experience(repo_root, [0.25, 0.5, -0.75, 0.5], "run.log_samples=2")
    rows = display_samples(cfg, exp, per_source, total, iteration=3)
    assert [r["sample_index"] for r in rows] == choose_samples(4, 2, seed=0, iteration=3).tolist()
    cfg, exp, per_source, total = _experience(repo_root, [0.0] * 4, "run.log_samples=0")
    assert display_samples(cfg, exp, per_source, total, iteration=1) == []


def _row(it, n, prompt="Say something bright.", response=" bright sun", reward=0.5, kl=0.01):
    return {"iteration": it, "policy_version": it - 1, "prompt_index": 10 * it, "sample_index": n, "prompt": prompt,
            "response": response, "response_tokens": 3, "rewards": {"labeler_direct": reward, "ground_truth": 1.0},
            "reward": reward, "kl": kl}


def _run_dir(tmp_path, rows):
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_select_and_format_a_hand_written_file(tmp_path):
    long_prompt = " ".join(f"w{i}" for i in range(200))  # ~1,000 characters
    rows = [_row(1, 0), _row(1, 1), _row(2, 0, prompt=long_prompt, response="line one\nline two", reward=None),
            _row(3, 0, response="")]
    rows = read_samples(_run_dir(tmp_path, rows))
    assert [r["iteration"] for r in select_iterations(rows)] == [3]
    assert [r["iteration"] for r in select_iterations(rows, last=2)] == [2, 3]
    assert [r["iteration"] for r in select_iterations(rows, iteration=1)] == [1, 1]
    with pytest.raises(RunDirError, match="no samples of iteration 9; the run has iterations 1-3"):
        select_iterations(rows, iteration=9)

    text = format_samples(select_iterations(rows, last=3), width=80)
    lines = text.splitlines()
    assert "── iteration 1: 2 samples of policy version 0 ──" in lines
    header = lines[1].split()
    assert header == ["#", "prompt·sample", "reward", "labeler_direct", "ground_truth", "KL", "(nats)", "tokens"]
    assert lines[2].split() == ["1", "10·0", "+0.500", "+0.500", "+1.000", "0.010", "3"]
    assert "  prompt    Say something bright." in lines and "  response   bright sun" in lines
    # The long prompt: its first line, a note on what was cut, its last lines; all within 80 columns.
    assert any(l.strip().startswith("… (") and "more characters; --full shows all)" in l for l in lines)
    assert "w199" in text and "w100" not in text and max(len(l) for l in lines) <= 80
    assert "  response  line one" in lines and " " * 12 + "line two" in lines  # line breaks kept
    assert "reward" in text and " n/a " in text and "(empty)" in text
    full = format_samples(select_iterations(rows, iteration=2), width=80, full=True)
    assert "w100" in full and "more characters" not in full


def test_markdown_table_for_tensorboard_is_one_row_per_sample():
    md = samples_markdown([_row(1, 0, response="a | b\nc"), _row(1, 1, prompt="x" * 900)], max_chars=600)
    lines = md.splitlines()
    assert lines[0] == "| # | reward | labeler_direct | ground_truth | KL (nats) | tokens | prompt | response |"
    assert len(lines) == 4 and all(l.startswith("| ") and l.endswith(" |") for l in lines[2:])
    assert "a \\| b ⏎ c" in lines[2]                      # pipe escaped, line break shown
    assert "(+300 chars)" in lines[3]


def test_metrics_writer_puts_the_table_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlaif_ray.run_dir import MetricsWriter

    w = MetricsWriter(tmp_path, "t")
    w.write_samples(2, [_row(2, 0)])
    w.write_samples(3, [])  # nothing to show: nothing written
    w.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    events = acc.Tensors("samples/text_summary")
    assert [e.step for e in events] == [2]
    assert "| +0.500 | +0.500 | +1.000 | 0.010 | 3 |" in events[0].tensor_proto.string_val[0].decode()


def test_cli_samples_prints_and_fails_clearly(tmp_path, capsys):
    assert main(["samples", str(tmp_path / "nope")]) == 2
    assert "no run dir at" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["samples", str(empty)]) == 2
    assert "has no samples.jsonl" in capsys.readouterr().err
    run = _run_dir(tmp_path, [_row(1, 0), _row(2, 0), _row(2, 1)])
    assert main(["samples", str(run)]) == 0
    out = capsys.readouterr().out
    assert "iteration 2: 2 samples" in out and "iteration 1" not in out
    assert main(["samples", str(run), "--last", "2"]) == 0
    assert "iteration 1: 1 sample of" in capsys.readouterr().out
    assert main(["samples", str(run), "--iteration", "5"]) == 2
    assert "no samples of iteration 5" in capsys.readouterr().err
    with (run / "samples.jsonl").open("a") as f:
        f.write('{"iteration": 3, "pro')  # a write cut short
    assert main(["samples", str(run)]) == 2
    assert "samples.jsonl line 4 is not JSON" in capsys.readouterr().err
