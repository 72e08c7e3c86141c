"""Against TRL: one GRPO iteration of ours vs one generation round of TRL's `GRPOTrainer`.

Both sides, on CPU, in fp32: the same random-weight ~75M Llama, the same prompts in the same
order, 4 samples per prompt, 32 new tokens at T=1 (no top-k, top-p 1), the deterministic
reward `toy.task:rule_score` (no labeler, no reward model), AdamW lr 1e-5 (no
schedule, no weight decay, grad-norm clip 1.0), clip ε 0.2, KL to the reference as a loss
term with the k3 estimator and β 0.02, group-normalised advantages, and two optimiser steps
of 16 sequences per batch of 32 (so TRL computes old logprobs for the ratio).

    ours: rlaif_ray.driver.train.run_iteration (rollout, reference, old logprobs, GRPO
          advantages, 2 DeepSpeed steps, weight sync to every rollout engine, probe), in two
          passes: π_old recomputed by the learner (the same forwards as TRL), then π_old
          from the engine's sampling logprobs (`ppo.old_logprobs: rollout`, one forward fewer)
    TRL : the 2 trainer steps that consume one generation (HF generate, old + reference
          logprobs, 2 optimiser steps), timed with a TrainerCallback

The two alternate (`bench.common.Rounds`: TRL, ours, TRL, ours, …): after each TRL round the
callback runs one of our iterations (TRL's clock is stopped meanwhile), so load changes on
the shared machine hit both. The first round of each is a warm-up and not counted; each side
is reported as median and min–max.

    ratio = median ours s/iteration / median TRL s/round of the same pass   (goal ≤ 0.7×)
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time

from bench.common import Result, Rounds, median
from bench.workloads import LLAMA_75M, bench_config, bench_model, model_params, tiny_models

GOAL = 0.7
# ppo.old_logprobs → how a row names it
OLD_LOGPROBS = {"learner": "π_old recomputed", "rollout": "π_old from the engine"}
INSTALL_HINT = "install the bench extra: pip install -e '.[bench]'"


def run(quick: bool) -> Result:
    missing = [m for m in ("trl", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"bench trl: skipped: {', '.join(missing)} not installed; {INSTALL_HINT}", flush=True)
        return Result("trl", quick, {}, [], [], status="skipped",
                      notes=[f"{', '.join(missing)} not installed; {INSTALL_HINT}"])
    path = tiny_models()["policy"] if quick else bench_model(LLAMA_75M)
    prompts, group, new_tokens, minibatch, rounds = (2, 2, 8, 2, 2) if quick else (8, 4, 32, 16, 4)
    settings = {"model": path.name, "params": model_params(path), "prompts_per_iteration": prompts,
                "samples_per_prompt": group, "max_new_tokens": new_tokens, "temperature": 1.0, "top_k": "off",
                "top_p": 1.0, "minibatch": minibatch, "optimizer_steps_per_iteration": prompts * group // minibatch,
                "lr": 1e-5, "weight_decay": 0.0, "max_grad_norm": 1.0, "clip": 0.2, "kl": "k3 in loss, beta 0.02",
                "reward": "toy.task:rule_score", "rounds_measured": rounds - 1, "dtype": "float32"}
    overrides = (f"data.prompts_per_iteration={prompts}", f"rollout.sampling.samples_per_prompt={group}",
                 f"rollout.sampling.max_new_tokens={new_tokens}", "rollout.sampling.top_k=-1",
                 "rollout.sampling.top_p=1.0", "rollout.sampling.temperature=1.0", "ppo.algorithm=grpo",
                 "ppo.epochs=1", f"ppo.minibatch_size={minibatch}", "learner.lr=1e-5",
                 "learner.weight_decay=0.0", "learner.max_grad_norm=1.0", "ppo.clip=0.2", "kl.coef=0.02",
                 "kl.placement=loss", "kl.estimator=k3", "kl.controller=fixed", "ray.object_store_mib=1024")
    rows, summary, extra = [], {}, {}
    for n, (source, what) in enumerate(OLD_LOGPROBS.items(), 1):  # one pass each: its own roles and TRL trainer
        cfg = bench_config(*overrides, f"ppo.old_logprobs={source}", policy=path)
        pass_rows, ratio, extra[source] = _pass(cfg, path, prompts, group, new_tokens, minibatch, rounds, what, n)
        rows += pass_rows
        summary[f"ratio, {what} (ours / TRL, medians)"] = ratio
    settings.update({"ours_rollout_actors": cfg.rollout.num_actors, "ours_learners": cfg.learner.num_workers})
    summary.update({"rounds": f"{rounds - 1} per pass, alternating", "goal": f"≤ {GOAL}× (either pass)",
                    "goal met": bool(min(summary.values()) <= GOAL)})
    notes = [
        "Two passes, each alternating TRL with ours: ours with π_old recomputed by the learner (the forwards TRL "
        "runs: it recomputes π_old too), then ours with π_old taken from the rollout engine's sampling logprobs "
        "(ppo.old_logprobs: rollout, one forward of the batch fewer; docs/pipeline.md).",
        "Differences that remain: ours also syncs weights to the rollout engines and runs the sync probe "
        "(TRL generates with the training model itself); TRL divides advantages by the sample std + 1e-4, ours "
        "by the population std + 1e-6 (no cost difference); ours prepends <s> to prompts, TRL tokenizes the "
        "text without special tokens (1 token per prompt).",
        "Ours splits the work over processes (rollout actors, reference, learners), each using the cores "
        "over the actors computing in its stage (rlaif_ray.cores); TRL runs in one process with torch "
        "using all cores' threads.",
    ]
    return Result("trl", quick, settings, rows, [("system", "system"), ("seconds", "s / iteration (median)"),
                                                 ("min", "min"), ("max", "max")],
                  summary=summary, notes=notes, extra=extra)


def _pass(cfg, path, prompts: int, group: int, new_tokens: int, minibatch: int, rounds: int, what: str,
          n: int) -> tuple[list[dict], float, dict]:
    """One pass: `rounds` of TRL alternating with ours under `cfg`; (table rows, ratio, raw figures)."""
    alt = Rounds("trl", "ours", rounds - 1, warmup=1)  # values: seconds; ours' raw: its stage timings
    trl_step_s = _measure(cfg, path, prompts, group, new_tokens, minibatch, alt)
    st = alt.stats(ratio=("ours", "trl"))
    rows = [{"system": f"rlaif-ray GRPO iteration, {what} ({cfg.rollout.num_actors} rollout actor, "
                       f"{cfg.learner.num_workers} DeepSpeed learner, 1 reference)", **_cols(st["ours"])},
            {"system": f"TRL GRPOTrainer, 1 process (2 trainer steps = 1 generation round), pass {n}",
             **_cols(st["trl"])}]
    ours_rows = alt.raw["ours"][alt.warmup:]
    stages = {k: median([r[k] for r in ours_rows if k in r]) for k in ours_rows[0]}
    return rows, st["ratio"], {"rounds": st, "ours_seconds": alt.values["ours"], "trl_round_seconds": alt.values["trl"],
                               "trl_step_seconds": trl_step_s, "ours_stage_seconds": stages}


def _cols(s: dict) -> dict:
    return {"seconds": s["median"], "min": s["min"], "max": s["max"]}


def _measure(cfg, path, prompts: int, group: int, new_tokens: int, minibatch: int, alt: Rounds) -> list[float]:
    """Run TRL for every round of `alt`, one of our iterations after each; fills `alt`, returns
    TRL's per-trainer-step seconds."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from bench.workloads import live_run, tokenized_prompts
    from rlaif_ray.driver.train import run_iteration
    from rlaif_ray.modeling import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(path))
    rounds = alt.warmup + alt.rounds
    texts = [p.text for p in tokenized_prompts(cfg, prompts * rounds)]  # our stream's order
    steps_per_round = prompts * group // minibatch
    trl_step_s = []

    with live_run(cfg) as run:
        class Alternate(TrainerCallback):
            """Times TRL's rounds and runs one of our iterations between them (TRL's clock stopped)."""

            def on_train_begin(self, args, state, control, **kw):
                self.round_start = self.step_start = time.perf_counter()

            def on_step_begin(self, args, state, control, **kw):
                self.step_start = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                now = time.perf_counter()
                trl_step_s.append(now - self.step_start)
                if state.global_step % steps_per_round:
                    return
                alt.record("trl", now - self.round_start)
                n = len(alt.values["trl"])
                print(f"bench trl: round {n}/{rounds}: TRL {alt.values['trl'][-1]:.1f} s", flush=True)
                row = run_iteration(run)
                alt.record("ours", row["timing/iteration"], {k: v for k, v in row.items() if k.startswith("timing/")})
                print(f"bench trl: round {n}/{rounds}: ours {alt.values['ours'][-1]:.1f} s", flush=True)
                self.round_start = time.perf_counter()

        def rule_score(prompts, completions, **kw):  # TRL's reward-function signature
            from toy.task import rule_score as score

            return [score(c) for c in completions]

        torch.set_num_threads(os.cpu_count() or 1)
        with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
            args = _trl_args(cfg, out, group, new_tokens, minibatch, steps_per_round, rounds)
            trainer = GRPOTrainer(model=load_causal_lm(str(path)), reward_funcs=rule_score, args=args,
                                  train_dataset=Dataset.from_dict({"prompt": texts}), processing_class=tok,
                                  callbacks=[Alternate()])
            trainer.train()

    return trl_step_s


def _trl_args(cfg, out: str, group: int, new_tokens: int, minibatch: int, steps_per_round: int, rounds: int):
    """TRL's settings for the same work as ours: one generation round per `steps_per_round`
    optimiser steps, k3 KL in the loss at our coefficient, our clip, no warm-up or schedule."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out, per_device_train_batch_size=minibatch, gradient_accumulation_steps=1,
        steps_per_generation=steps_per_round, num_generations=group,
        max_completion_length=new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=1e-5, weight_decay=0.0, max_grad_norm=1.0, lr_scheduler_type="constant",
        warmup_steps=0, beta=cfg.kl.coef, epsilon=cfg.ppo.clip, num_iterations=1, loss_type="dapo",
        scale_rewards="group", max_steps=rounds * steps_per_round, logging_steps=rounds * steps_per_round,
        save_strategy="no", report_to="none", use_cpu=True, bf16=False, shuffle_dataset=False,
        seed=cfg.run.seed, disable_tqdm=True, dataloader_num_workers=0)
