"""`rlaif-ray rejection-sampling`: best-of-n by the AI labeler, then SFT on the winners.

One round, as named stages (the PPO driver's own stages where they are the same):

    prompts -> rollout actors: n samples per prompt             (driver/pipeline.py)
            -> labeler actors: direct RLAIF reward per sample    (each chunk as it is generated)
            -> best sample per prompt (argmax of the reward)     (evaluation.best_of_n)
            -> learners: SFT on the kept samples                 (LearnerWorker.train_sft)
            -> weight sync learner -> rollout engines (+ probe)  (driver.train.sync_weights)
            -> metrics row: mean reward of all samples and of the kept ones

After the last round the learners export the policy to OUTPUT_DIR/final/hf. The driver
reads only rewards and row keys (a few numbers per sample), never the batches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import ray
from tqdm import tqdm

from rlaif_ray.algorithms import make_kl_controller
from rlaif_ray.batch import RolloutBatch
from rlaif_ray.config import RejectionSamplingConfig, RewardSource
from rlaif_ray.data import prompt_stream
from rlaif_ray.driver.interrupts import stop_if_interrupted
from rlaif_ray.driver.logs import RunLogs
from rlaif_ray.driver.pools import get_with_timeout
from rlaif_ray.driver.roles import running_roles
from rlaif_ray.driver.runtime import ray_session
from rlaif_ray.weight_sync.driver import make_weight_sync
from rlaif_ray.driver.train import RunState, StageTimer, probe_if_due, record_prompts, serve_start_weights, sync_weights
from rlaif_ray.driver.warm import WarmRoles, require_outer_session
from rlaif_ray.evaluation import best_of_n, mean_se
from rlaif_ray.modeling import load_tokenizer
from rlaif_ray.preflight import check_models
from rlaif_ray.weight_sync.probe import probe_prompt
from rlaif_ray.rewards import function_rewards
from rlaif_ray.run_dir import MetricsWriter, prepare_run_dir

log = logging.getLogger("rlaif_ray")


@ray.remote(num_cpus=0)
def shard_facts(function_sources: list[RewardSource], *shards: RolloutBatch) -> dict:
    """Row keys and ground-truth scores of the concatenated shards: (B,) arrays, small."""
    batch = RolloutBatch.concat(list(shards))
    out = {"prompt_index": batch.prompt_index, "response_lens": batch.response_lens}
    for s in function_sources:
        out[s.label] = function_rewards(s, batch.prompts, batch.responses)
    return out


def train_sft(run: RunState, shards: list, best: np.ndarray) -> dict:
    per_rank = run.roles.learners.call_all("train_sft", shards, best.tolist(), run.iteration)
    return {k: v for k, v in per_rank[0].items() if k != "seconds"}


def run_round(run: RunState) -> dict:
    """One round; returns its metrics row."""
    t = StageTimer()
    fn_sources = [s for s in run.cfg.reward.sources if s.kind == "function"]
    with t("iteration"):
        with t("prompts"):
            run.pipeline.fill()
        with t("rollout"):
            batch = run.pipeline.generated()
            record_prompts(run, batch)
        with t("reward"):
            # The labeler scored each chunk as soon as it was generated (driver/pipeline.py).
            scored = run.pipeline.scored(batch)
            shards = scored["shards"]
            facts_ref = shard_facts.remote(fn_sources, *shards)
            rewards = np.concatenate(ray.get(scored["rewards"])).astype(np.float64)
            facts = get_with_timeout(facts_ref, run.cfg.run.call_timeout_s, "driver", "row keys")
        nonempty = facts["response_lens"] > 0
        best = best_of_n(facts["prompt_index"], rewards, nonempty)
        if len(best) < run.cfg.minibatch_size:
            log.warning("round %d: only %d samples kept, fewer than one minibatch (%d): no SFT step",
                        run.iteration + 1, len(best), run.cfg.minibatch_size)
        with t("train"):
            sft = train_sft(run, shards, best)
        with t("sync"):
            sync = sync_weights(run)
        with t("probe"):
            probe_stats = probe_if_due(run)
    run.iteration += 1
    finite = np.isfinite(rewards)
    row = {"iteration": run.iteration, "round": run.iteration, "policy_version": run.policy_version}
    row["reward/mean"], row["reward/se"] = mean_se(rewards[finite])
    row["reward/kept_mean"], row["reward/kept_se"] = mean_se(rewards[best])
    for s in fn_sources:
        row[f"reward/{s.label}/mean"] = float(np.mean(facts[s.label]))
        row[f"reward/{s.label}/kept_mean"] = float(np.mean(facts[s.label][best])) if len(best) else float("nan")
    lens = facts["response_lens"]
    row.update({"response_length/mean": float(lens.mean()),
                "response_length/kept_mean": float(lens[best].mean()) if len(best) else float("nan"),
                "data/samples": int(len(rewards)), "data/kept": int(len(best)),
                "data/nonfinite_rewards": int((~finite).sum()), "data/empty_responses": int((~nonempty).sum())})
    row.update(sft)
    row.update(sync)
    row.update(probe_stats)
    row.update(t.seconds)
    return row


def rejection_sampling_run(cfg: RejectionSamplingConfig, overwrite: bool = False, progress: bool = True,
                           verbose: bool = False, warm: WarmRoles | None = None) -> dict:
    """Check, start the roles (no reference actor), run every round, export the policy.
    Engine and driver output goes to OUTPUT_DIR/logs/; `verbose` streams it instead. `warm`:
    roles kept by earlier runs of this driver, as in `train_run`."""
    require_outer_session(warm)
    check_models(cfg)
    out = Path(cfg.rejection_sampling.output_dir)
    tokenizer = load_tokenizer(cfg.model.policy, cfg.model.trust_remote_code)
    logs = RunLogs.under(out, verbose)
    with logs.quiet_loading():
        stream = prompt_stream(cfg.data, tokenizer, cfg.model.policy, cfg.run.seed)
    prepare_run_dir(out, cfg, resume=False, overwrite=overwrite)
    with ray_session(cfg.ray, logs), running_roles(cfg, reference=False, logs=logs, warm=warm) as roles:
        # No KL term: the fine-tune reads no reference.
        run = RunState(cfg, roles, stream, make_kl_controller("fixed", 0.0, None, 1), make_weight_sync(cfg.sync, roles.rollout),
                       probe_prompt(tokenizer), out)
        serve_start_weights(run)
        writer = MetricsWriter(out, cfg.run.name)
        try:
            rows = run_rounds(run, writer, logs, progress)
        finally:
            writer.close()
        roles.learners.call_all("save_checkpoint", str(out / "final"), cfg.model.policy)
    summary = {"rounds": len(rows), "policy": str(out / "final" / "hf"),
               "reward_first": rows[0]["reward/mean"], "reward_last": rows[-1]["reward/mean"],
               "kept_first": rows[0]["reward/kept_mean"], "kept_last": rows[-1]["reward/kept_mean"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_rounds(run: RunState, writer: MetricsWriter, logs: RunLogs, progress: bool) -> list[dict]:
    """Every round, each metrics row written as it comes; returns the rows."""
    cfg, rows = run.cfg, []
    bar = tqdm(total=cfg.run.iterations, desc=f"{cfg.run.name} best-of-{cfg.rollout.sampling.samples_per_prompt}",
               disable=not progress, unit="round", dynamic_ncols=True, file=logs.terminal)
    with bar:
        while run.iteration < cfg.run.iterations:
            stop_if_interrupted()
            row = run_round(run)
            writer.write(row)
            rows.append(row)
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward/mean']:+.3f}", kept=f"{row['reward/kept_mean']:+.3f}")
    return rows
