"""`rlaif-ray eval`: policy A against policy B on held-out prompts.

    prompts -> (A's engines ‖ B's engines: one answer per prompt)
            -> labeler actors: P(A ≻ B) per pair, both orders (position-debiased)
            -> win rate + Wilson interval; harmless rate (classifier); ground truth (function)
            -> curves of run_dirs; report.md, eval.json, answers.jsonl

Answers are short texts, so they come back to the driver (the report lists them); the
engines hold the models.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from actors.classifier import ClassifierActor
from actors.generator import GeneratorActor
from actors.labeler import LabelerActor
from rlaif_ray.config import ConfigError, EvalConfig, HarmlessJudge, RewardSource
from rlaif_ray.curves import describe_runs, plot_curves
from rlaif_ray.driver.logs import RunLogs
from rlaif_ray.driver.calls import CallPolicy
from rlaif_ray.driver.pools import ActorPool, describe_roles, wait_all_ready
from rlaif_ray.driver.runtime import actor_env, ray_session
from rlaif_ray.labeler.render import labeler_context_tokens
from rlaif_ray.evaluation import (eval_prompt_texts, render_report, shown_path, summarize_function,
                                  summarize_harmless, summarize_preferences)
from rlaif_ray.preflight import check_labeler_prompts, check_model_ref, check_prompt_format
from rlaif_ray.prompts import display_text
from rlaif_ray.rewards import function_rewards

OUTPUTS = ("eval.json", "report.md", "answers.jsonl")


def check_eval(cfg: EvalConfig, output_dir: Path, overwrite: bool) -> tuple[str, str]:
    """Everything checkable without Ray; returns the (A, B) model refs."""
    e = cfg.eval
    if not e.policy_a:
        raise ConfigError("eval.policy_a: required (an HF folder, e.g. RUN_DIR/checkpoints/iter-000012/hf); "
                          "give it with --set eval.policy_a=PATH")
    policy_b = e.policy_b or cfg.model.policy
    check_model_ref("eval.policy_a", e.policy_a)
    check_model_ref("eval.policy_b" if e.policy_b else "model.policy", policy_b)
    check_model_ref("model.labeler", cfg.model.labeler)
    for path in (e.policy_a, policy_b):
        check_prompt_format(cfg.data, path, cfg.model.trust_remote_code)
    check_labeler_prompts(cfg)
    if e.harmless:
        check_model_ref("eval.harmless.classifier", e.harmless.classifier)
    if e.function_judge:
        import importlib

        module, _, name = e.function_judge.partition(":")
        if not name:
            raise ConfigError(f"eval.function_judge: expected 'package.module:function', got {e.function_judge!r}")
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"eval.function_judge: cannot import {e.function_judge!r}: {err}") from None
    for k, d in enumerate(e.run_dirs):
        if not (Path(d) / "metrics.jsonl").is_file():
            raise ConfigError(f"eval.run_dirs.{k}: {d} has no metrics.jsonl")
    if not overwrite and any((output_dir / f).exists() for f in OUTPUTS):
        raise ConfigError(f"eval.output_dir: {output_dir} already holds an evaluation; pass --overwrite to replace it")
    return e.policy_a, policy_b


def _split(items: list, parts: int) -> list[list]:
    return [[items[i] for i in idx] for idx in np.array_split(np.arange(len(items)), parts) if len(idx)]


def evaluate(cfg: EvalConfig, overwrite: bool = False, progress: bool = True, verbose: bool = False) -> dict:
    """Run the whole evaluation; writes the outputs into eval.output_dir and returns the summary.
    Engine and driver output goes to eval.output_dir/logs/; `verbose` streams it instead."""
    start = time.perf_counter()
    e = cfg.eval
    out = Path(e.output_dir)
    policy_a, policy_b = check_eval(cfg, out, overwrite)
    logs = RunLogs.under(out, verbose)
    with logs.quiet_loading():
        records = eval_prompt_texts(e.prompts, e.prompt_column, e.prompts_split, e.num_prompts)
    out.mkdir(parents=True, exist_ok=True)  # after the prompts: bad prompts leave no output dir behind
    texts = [display_text(r) for r in records]  # what the judge and the report read
    bar = tqdm(total=4 + bool(e.harmless), desc="eval", disable=not progress, unit="stage", dynamic_ncols=True,
               file=logs.terminal)
    harmless = None
    with ray_session(cfg.ray, logs):
        pools = EvalPools()
        try:
            bar.set_postfix_str("starting engines")
            pools = start_pools(cfg, policy_a, policy_b, logs)
            bar.update(1)
            bar.set_postfix_str("answering")
            answers, truncated = answer(pools, list(enumerate(records)))  # engines format each record as in training
            resp = {s: [x["response"] for x in answers[s]] for s in "ab"}
            bar.update(1)
            bar.set_postfix_str("judging")
            prefs = judge(pools.labeler, texts, resp)
            bar.update(1)
            if pools.classifier:
                bar.set_postfix_str("harmless classifier")
                harmless = harmless_probabilities(pools.classifier, e.harmless, texts, resp)
                bar.update(1)
        finally:
            pools.shutdown()
    bar.set_postfix_str("report")
    summary, scores = summarize(cfg, policy_a, policy_b, texts, answers, truncated, prefs, harmless, out)
    summary["seconds"] = time.perf_counter() - start
    _write_outputs(out, summary, texts, resp, prefs, scores, harmless)
    bar.update(1)
    bar.close()
    return summary


@dataclass
class EvalPools:
    """The actors of an evaluation: each policy's engines, the judge, the optional classifier."""

    a: ActorPool | None = None
    b: ActorPool | None = None
    labeler: ActorPool | None = None
    classifier: ActorPool | None = None

    def all(self) -> list[ActorPool]:
        return [p for p in (self.a, self.b, self.labeler, self.classifier) if p is not None]

    def shutdown(self) -> None:
        for pool in self.all():
            pool.shutdown()


def start_pools(cfg: EvalConfig, policy_a: str, policy_b: str, logs: RunLogs) -> EvalPools:
    """Create every pool at once (engines build concurrently), then wait until all answer."""
    e, started = cfg.eval, time.perf_counter()
    timeout, policy, env = cfg.run.startup_timeout_s, CallPolicy.of(cfg.run), actor_env(cfg.ray)
    counts = [("policy_a", e.actors_per_policy), ("policy_b", e.actors_per_policy),
              ("labeler", cfg.labeler.num_actors)] + ([("classifier", 1)] if e.harmless else [])
    logs.say(f"starting {describe_roles(counts)}")

    def generators(side: str, path: str) -> ActorPool:
        return ActorPool(f"policy_{side}", GeneratorActor, cfg.rollout.resources, e.actors_per_policy,
                         lambda r: (cfg, path, f"policy_{side}-{r}"), env, timeout, logs, policy)
    pools = EvalPools(generators("a", policy_a), generators("b", policy_b))
    # The judge reads a prompt and both answers.
    context = labeler_context_tokens(cfg.labeler, cfg.data.max_prompt_tokens + 2 * e.sampling.max_new_tokens)
    pools.labeler = ActorPool("labeler", LabelerActor, cfg.labeler.resources, cfg.labeler.num_actors,
                              lambda r: (cfg, r, context), env, timeout, logs, policy)
    if e.harmless:
        pools.classifier = ActorPool("classifier", ClassifierActor, e.harmless.resources, 1,
                                     lambda r: (e.harmless, cfg.model), env, timeout, logs, policy)
    try:
        wait_all_ready(pools.all(), timeout, logs, started)
    except BaseException:
        pools.shutdown()
        raise
    return pools


def answer(pools: EvalPools, items: list[tuple[int, object]]) -> tuple[dict[str, list[dict]], int]:
    """Both policies answer every (position, record), their engines all at once; each side's
    answers in prompt order, and the most prompts either side had to truncate."""
    sides = {"a": pools.a, "b": pools.b}
    sent = {side: [pool.submit(i, "answer", chunk, k, prompts=len(chunk))
                   for i, chunk in enumerate(_split(items, len(pool.actors)))]
            for k, (side, pool) in enumerate(sides.items())}
    answers, truncated = {}, 0
    for side, pool in sides.items():
        got = [c.value for c in pool.wait(sent[side])]
        answers[side] = sorted((x for g in got for x in g["answers"]), key=lambda x: x["position"])
        truncated = max(truncated, sum(g["truncated"] for g in got))
    return answers, truncated


def judge(labeler: ActorPool, texts: list[str], resp: dict[str, list[str]]) -> dict[str, list]:
    """The labeler's position-debiased P(A ≻ B) of every pair (both orders), in prompt order."""
    groups = _split(list(range(len(texts))), len(labeler.actors))
    parts = [c.value for c in labeler.map("pairwise_preferences", [
        ([texts[i] for i in g], [resp["a"][i] for i in g], [resp["b"][i] for i in g]) for g in groups],
        prompts=[len(g) for g in groups])]
    return {k: [v for p in parts for v in p[k]] for k in parts[0]}


def harmless_probabilities(classifier: ActorPool, h: HarmlessJudge, texts: list[str],
                           resp: dict[str, list[str]]) -> dict[str, list[float]]:
    """The classifier's P(harmless) of each side's answers (with their prompts if asked)."""
    out = {}
    for s in "ab":
        inputs = [(f"{t}{r}" if h.include_prompt else r) or " " for t, r in zip(texts, resp[s])]
        out[s] = classifier.call(0, "probabilities", inputs, prompts=len(inputs))
    return out


def summarize(cfg: EvalConfig, policy_a: str, policy_b: str, texts: list[str], answers: dict, truncated: int,
              prefs: dict, harmless: dict | None, out: Path) -> tuple[dict, dict]:
    """eval.json's content, and the function judge's scores per side ({} without one)."""
    e = cfg.eval
    resp = {s: [x["response"] for x in answers[s]] for s in "ab"}
    summary = {
        # Paths resolved alike for A, B and the labeler, however each was given.
        "policy_a": shown_path(policy_a), "policy_b": shown_path(policy_b),
        "policy_b_from": "eval.policy_b" if e.policy_b else "model.policy",
        "labeler": shown_path(cfg.model.labeler), "seed": cfg.run.seed,
        "prompts": {"source": shown_path(e.prompts), "n": len(texts), "distinct": len(set(texts)), "truncated": truncated},
        "sampling": e.sampling.model_dump(),
        "win_rate": summarize_preferences(prefs["p_a"], prefs["p_ab"], prefs["p_ba"],
                                          [x == y for x, y in zip(resp["a"], resp["b"])], e.confidence),
        "answers": {"n_prompts": len(texts),
                    "a_tokens_mean": float(np.mean([x["tokens"] for x in answers["a"]])),
                    "b_tokens_mean": float(np.mean([x["tokens"] for x in answers["b"]])),
                    # finished is False when the answer ran into max_new_tokens (cut off)
                    "max_new_tokens": e.sampling.max_new_tokens,
                    "a_at_length_limit": sum(not x["finished"] for x in answers["a"]),
                    "b_at_length_limit": sum(not x["finished"] for x in answers["b"])},
        "harmless": None, "function_judge": None, "run_dirs": list(e.run_dirs), "curves": [],
    }
    scores = {}
    if e.function_judge:
        judge_fn = RewardSource(kind="function", function=e.function_judge, weight=0.0)
        scores = {s: function_rewards(judge_fn, texts, resp[s]).tolist() for s in "ab"}
        summary["function_judge"] = summarize_function(e.function_judge, scores["a"], scores["b"])
    if harmless is not None:
        summary["harmless"] = {"classifier": shown_path(e.harmless.classifier), "harmless_label": e.harmless.harmless_label,
                               **summarize_harmless(harmless["a"], harmless["b"], e.harmless.threshold)}
    if e.run_dirs:
        summary["runs"] = describe_runs(e.run_dirs)
        summary["curves"] = plot_curves(e.run_dirs, e.curves, out)
    return summary, scores


def _write_outputs(out: Path, summary: dict, texts, resp, prefs, scores, harmless_probs) -> None:
    with (out / "answers.jsonl").open("w") as f:
        for i, t in enumerate(texts):
            row = {"position": i, "prompt": t, "a": resp["a"][i], "b": resp["b"][i],
                   **{k: prefs[k][i] for k in ("p_a", "p_ab", "p_ba")}}
            if prefs["rationale_ab"][i] or prefs["rationale_ba"][i]:
                row.update(rationale_ab=prefs["rationale_ab"][i], rationale_ba=prefs["rationale_ba"][i])
            if scores:
                row.update(score_a=scores["a"][i], score_b=scores["b"][i])
            if harmless_probs:
                row.update(p_harmless_a=harmless_probs["a"][i], p_harmless_b=harmless_probs["b"][i])
            f.write(json.dumps(row) + "\n")
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(render_report(summary))
