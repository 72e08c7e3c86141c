"""Pure pieces of evaluation and rejection sampling: prompts, seeds, best-of-n, summary, report.

No Ray and no engines here; `rlaif_ray/driver/evaluate.py` and `driver/rejection.py` run
the actors and call these.

    win rate  = mean_i step(P_i(A ≻ B) − 1/2)        step: 1 win, 1/2 tie, 0 loss
    P_i(A ≻ B) = (P(A | A shown first) + 1 − P(B | B shown first)) / 2   (position-debiased)
    interval  = Wilson score interval of the win rate (`rlaif_ray.metrics.win_rate_interval`)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rlaif_ray.metrics import harmless_rate, win_rate_interval

SIDES = ("a", "b")


def eval_prompt_texts(source: str, column: str, split: str, n: int) -> list[str]:
    """The first `n` held-out prompts of `source` (`eval.prompts`). A file or dataset with
    fewer than `n` prompts is an error naming `eval.num_prompts`."""
    from rlaif_ray.config import ConfigError
    from rlaif_ray.data import load_prompts

    texts = load_prompts(source, column, split, field="eval.prompts", column_field="eval.prompt_column")
    if len(texts) < n:
        raise ConfigError(f"eval.num_prompts: {n} asked but {source} holds only {len(texts)} prompts")
    return texts[:n]


def answer_seed(run_seed: int, side: int, position: int) -> int:
    """Seed of one sampled answer: a function of (run seed, policy side 0/1, prompt position),
    so a rerun reproduces every answer and A's and B's draws are independent."""
    return int(np.random.SeedSequence([run_seed, 7919, side, position]).generate_state(1)[0] & 0x7FFFFFFF)


def best_of_n(prompt_index: np.ndarray, rewards: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Row of the highest reward per prompt, sorted; (K,) int64 with K ≤ number of prompts.

    prompt_index (B,) which prompt each sample answers; rewards (B,); valid (B,) bool, False
    rows (non-finite reward, empty response) are never picked, and a prompt with no valid
    row is left out. Ties go to the earliest row.
    """
    prompt_index = np.asarray(prompt_index)
    r = np.asarray(rewards, dtype=np.float64)
    ok = np.isfinite(r) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(r))
    best: dict[int, int] = {}
    for row in np.flatnonzero(ok):
        p = int(prompt_index[row])
        if p not in best or r[row] > r[best[p]]:
            best[p] = int(row)
    return np.array(sorted(best.values()), dtype=np.int64)


def mean_se(x) -> tuple[float, float]:
    """Mean and its standard error s/√n (0 for one value)."""
    v = np.asarray(x, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0


def summarize_preferences(p_a, p_ab, p_ba, identical, confidence: float) -> dict:
    """Win rate of A over B (ties half) with its Wilson interval, and labeler diagnostics.

    `p_first_mean` = mean of P(first shown preferred) over both orders: 0.5 when the labeler
    has no position bias on these pairs.
    """
    p = np.asarray(p_a, dtype=np.float64)
    rate, low, high = win_rate_interval(p, confidence)
    margin = p - 0.5
    tie = np.abs(margin) <= 1e-9
    return {"rate": rate, "low": low, "high": high, "confidence": confidence, "n": int(p.size),
            "wins": int(((margin > 0) & ~tie).sum()), "ties": int(tie.sum()), "losses": int(((margin < 0) & ~tie).sum()),
            "mean_p_a": float(p.mean()), "identical_answers": int(np.sum(identical)),
            "p_first_mean": float((np.mean(p_ab) + np.mean(p_ba)) / 2)}


def summarize_harmless(probs_a, probs_b, threshold: float) -> dict:
    """Harmless rate per policy: share of answers with P(harmless) ≥ threshold."""
    out = {"threshold": threshold}
    for side, probs in zip(SIDES, (probs_a, probs_b)):
        flags = np.asarray(probs, dtype=np.float64) >= threshold
        out[side] = harmless_rate(flags)
        out[f"{side}_mean_p"] = float(np.mean(probs))
    return out


def summarize_function(name: str, scores_a, scores_b) -> dict:
    """Mean ground-truth score of each policy's answers, and the paired difference A − B."""
    (ma, sa), (mb, sb) = mean_se(scores_a), mean_se(scores_b)
    md, sd = mean_se(np.asarray(scores_a, dtype=np.float64) - np.asarray(scores_b, dtype=np.float64))
    return {"name": name, "a_mean": ma, "a_se": sa, "b_mean": mb, "b_se": sb, "diff": md, "diff_se": sd}


def shown_path(ref: str) -> str:
    """A model or data reference as the report shows it: a local path resolved to an absolute
    one (so A, B and the labeler read alike however each was given), a hub name as given."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def length_limit_note(answers: dict) -> list[str]:
    """report.md lines on answers cut off by eval.sampling.max_new_tokens, per policy."""
    n, limit = answers["n_prompts"], answers.get("max_new_tokens")
    cut = {side: answers.get(f"{side}_at_length_limit") for side in SIDES}
    if limit is None or None in cut.values():
        return []
    if not any(cut.values()):
        return [f"- no answer hit the length limit of {limit} tokens (eval.sampling.max_new_tokens)"]
    lines = [f"- answers cut off at the length limit of {limit} tokens (eval.sampling.max_new_tokens): "
             f"A {cut['a']} of {n} ({100 * cut['a'] / n:.0f}%), B {cut['b']} of {n} ({100 * cut['b'] / n:.0f}%)"]
    if max(cut.values()) > 0.1 * n:
        lines.append("  — the labeler judged these unfinished answers as they are, so the win rate partly measures "
                     "who fits in the limit; raise eval.sampling.max_new_tokens to judge whole answers")
    return lines


def render_report(s: dict) -> str:
    """report.md of one evaluation summary (the dict written to eval.json)."""
    w = s["win_rate"]
    pct = f"{100 * w['confidence']:g}%"
    verdict = ("A is preferred over B" if w["low"] > 0.5 else
               "B is preferred over A" if w["high"] < 0.5 else "no significant preference")
    b_from = s.get("policy_b_from", "eval.policy_b")
    lines = [
        "# Evaluation: policy A vs policy B", "",
        f"- **A** (eval.policy_a): `{s['policy_a']}`",
        f"- **B** ({b_from}{', the initial policy' if b_from == 'model.policy' else ''}): `{s['policy_b']}`",
        f"- **judge**: AI labeler `{s['labeler']}`, pairwise, both orders averaged (position-debiased)", "",
        "## Win rate of A over B", "",
        "The share of prompts on which the AI labeler prefers A's answer to B's, ties counted half: 0.5 means "
        "no preference, above 0.5 favours A. The Wilson interval is the range of win rates consistent with these "
        "n judgements at the stated confidence.", "",
        f"**{w['rate']:.3f}**, {pct} Wilson interval [{w['low']:.3f}, {w['high']:.3f}], n = {w['n']} "
        f"({w['wins']} wins, {w['ties']} ties counted half, {w['losses']} losses): {verdict} at {pct}.", "",
        f"- mean P(A preferred): {w['mean_p_a']:.3f}",
        f"- identical answers (ties by construction): {w['identical_answers']}",
        f"- labeler's mean P(first shown preferred): {w['p_first_mean']:.3f} (0.5 = no position bias)", "",
    ]
    lines += _judges_section(s)
    a = s["answers"]
    lines += ["## Answers", "",
              f"- prompts: {a['n_prompts']} from {s['prompts']['source']}; {s['prompts']['distinct']} distinct, "
              f"{s['prompts']['truncated']} truncated to data.max_prompt_tokens",
              f"- mean answer length, tokens: A {a['a_tokens_mean']:.1f}, B {a['b_tokens_mean']:.1f}",
              *length_limit_note(a), "",
              "## Settings", "",
              "- sampling: " + ", ".join(f"{k} {v}" for k, v in s["sampling"].items()),
              f"- seed: {s['seed']}; wall time {s['seconds']:.1f} s",
              "- every answer and judgement: [answers.jsonl](answers.jsonl); all numbers: [eval.json](eval.json)", ""]
    return "\n".join(lines + _curves_section(s))


def _judges_section(s: dict) -> list[str]:
    """Ground truth (function judge) and harmless rate, when the evaluation had them."""
    lines = []
    if s.get("function_judge"):
        f = s["function_judge"]
        lines += ["## Ground truth", "",
                  f"`{f['name']}`, mean over the same answers (± standard error):", "",
                  "| policy | mean |", "|---|---|",
                  f"| A | {f['a_mean']:+.3f} ± {f['a_se']:.3f} |", f"| B | {f['b_mean']:+.3f} ± {f['b_se']:.3f} |",
                  f"| A − B (paired) | {f['diff']:+.3f} ± {f['diff_se']:.3f} |", ""]
    if s.get("harmless"):
        h = s["harmless"]
        lines += ["## Harmless rate", "",
                  f"Classifier `{h['classifier']}`, label {h['harmless_label']}, harmless when "
                  f"P ≥ {h['threshold']:g}:", "",
                  f"- A: {h['a']:.3f} (mean P {h['a_mean_p']:.3f})", f"- B: {h['b']:.3f} (mean P {h['b_mean_p']:.3f})", ""]
    return lines


def _curves_section(s: dict) -> list[str]:
    """Each training-run figure with what it shows, after the list of runs it draws."""
    if not s.get("curves"):
        return []
    lines = ["## Training curves", "",
             "Each figure plots one metric of the training runs against the PPO iteration, one line per run:", ""]
    runs = s.get("runs") or [{"label": d, "dir": d} for d in s.get("run_dirs", [])]
    for r in runs:
        reward = f"; reward: {r['reward']}" if r.get("reward") else ""
        lines.append(f"- {r['label']}: `{r['dir']}`{reward}")
    lines.append("")
    for c in s["curves"]:  # one paragraph each, so images and notes render apart
        lines += [f"### {c.get('title', c['metric'])}", ""]
        if c.get("file"):
            lines += [f"![{c['metric']}]({c['file']})", "", f"{c.get('meaning', '')} (`{c['metric']}`)".strip(), ""]
        else:
            lines += [f"`{c['metric']}`: {c['note']}", ""]
    return lines
