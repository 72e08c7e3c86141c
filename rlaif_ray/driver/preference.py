"""Reward-model training and DPO runs: check the data, start the DeepSpeed workers, run the
epochs with a progress bar, write metrics.jsonl, save the model.

    pairs <- preference data (validated, labeled, split here: bad input fails before Ray)
    workers (M DeepSpeed ranks)  : setup(data ref)     tokenize; DPO: reference logprobs once
    epoch 0                      : evaluate            held-out metrics of the starting model
    epoch e = 1..E, step s       : train_step(e, s)    every rank its slice of the same batch
                                   evaluate            -> metrics row of epoch e
    save(output_dir)                                   HF folder + tokenizer (rank 0 writes)

The driver holds only the pairs' text (once, put in the object store) and small stat dicts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ray
from tqdm import tqdm

from actors.preference_learner import PreferenceLearnerWorker
from rlaif_ray.config import ConfigError, DPOConfig, RewardModelConfig
from rlaif_ray.driver.logs import RunLogs
from rlaif_ray.driver.calls import CallPolicy
from rlaif_ray.driver.pools import ActorPool, describe_roles, get_with_timeout, wait_all_ready
from rlaif_ray.driver.runtime import actor_env, ray_session
from rlaif_ray.preference_train import make_pairs, merge_weighted, read_pair_rows, split_eval
from rlaif_ray.preflight import check_model_ref, check_prompt_format
from rlaif_ray.run_dir import RunDirError, prepare_run_dir

MODES = {"rm": ("reward_model_train", "train-rm"), "dpo": ("dpo", "dpo")}


def _model_field(cfg: RewardModelConfig | DPOConfig, mode: str) -> tuple[str, str]:
    if mode == "rm":
        sec = cfg.reward_model_train
        return ("reward_model_train.backbone", sec.backbone) if sec.backbone else ("model.policy", cfg.model.policy)
    return ("dpo.policy", cfg.dpo.policy) if cfg.dpo.policy else ("model.policy", cfg.model.policy)


def load_training_pairs(cfg: RewardModelConfig | DPOConfig, mode: str) -> tuple[dict, dict]:
    """({"train": Pairs, "eval": Pairs}, data stats), every check done before any actor starts."""
    key, verb = MODES[mode]
    sec = getattr(cfg, key)
    check_model_ref(*_model_field(cfg, mode))
    if mode == "dpo":
        check_prompt_format(cfg.data, _model_field(cfg, mode)[1], cfg.model.trust_remote_code)
    pairs, stats = make_pairs(read_pair_rows(sec.data, f"{key}.data"), sec.labels, f"{key}.data {sec.data}")
    train_idx, eval_idx = split_eval(len(pairs), sec.eval_fraction, cfg.run.seed)
    if len(train_idx) < sec.batch_size:
        raise ConfigError(f"{key}.batch_size: {sec.batch_size} is more than the {len(train_idx)} training pairs")
    stats.update({"pairs/train": len(train_idx), "pairs/eval": len(eval_idx)})
    return {"train": pairs.select(train_idx), "eval": pairs.select(eval_idx)}, stats


def train_preference_model(cfg: RewardModelConfig | DPOConfig, mode: str, overwrite: bool = False, progress: bool = True,
                           verbose: bool = False) -> dict:
    """Run `rlaif-ray train-rm` (mode "rm") or `rlaif-ray dpo` (mode "dpo"); returns the summary.
    Worker and driver output goes to OUTPUT_DIR/logs/; `verbose` streams it instead."""
    key, verb = MODES[mode]
    sec = getattr(cfg, key)
    data, data_stats = load_training_pairs(cfg, mode)
    out = Path(sec.output_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunDirError(f"{key}.output_dir: {out} is not empty; pass --overwrite to replace it (nothing was changed)")
    prepare_run_dir(out, cfg, resume=False, overwrite=overwrite)
    w = sec.num_workers
    rows: list[dict] = []
    logs = RunLogs.under(out, verbose)
    with ray_session(cfg.ray, logs):
        started = time.perf_counter()
        logs.say(f"starting {describe_roles([(verb, w)])}")
        pool = ActorPool(verb, PreferenceLearnerWorker, sec.resources, w, lambda r: (cfg, mode, r, w),
                         actor_env(cfg.ray), cfg.run.startup_timeout_s, logs, CallPolicy.of(cfg.run), replaceable=False)
        try:
            addr, port = get_with_timeout(pool.actors[0].rendezvous_address.remote(), cfg.run.startup_timeout_s,
                                          f"{verb}-0", "start-up")
            data_ref = ray.put(data)  # once; every rank reads it from the object store
            setups = [a.setup.remote(addr, port, data_ref) for a in pool.actors]
            # The workers count as ready once their DeepSpeed set-up (and DPO's reference pass) is done.
            wait_all_ready([pool], cfg.run.startup_timeout_s, logs, started, also={verb: setups})
            setup = ray.get(setups[0])
            steps = setup["steps_per_epoch"]
            data_stats["data/truncated"] = setup["data/truncated"]
            rows.append({"epoch": 0, **data_stats, **_evaluate(pool, len(data["eval"]))})
            _write(out, rows[-1])
            bar = tqdm(total=sec.epochs * steps, desc=verb, unit="step", disable=not progress, dynamic_ncols=True,
                       file=logs.terminal)
            for epoch in range(1, sec.epochs + 1):
                start = time.perf_counter()
                train = _train_epoch(pool, epoch, steps, bar)
                row = {"epoch": epoch, **train, **_evaluate(pool, len(data["eval"])),
                       "timing/epoch": time.perf_counter() - start}
                rows.append(row)
                _write(out, row)
            bar.close()
            pool.call_all("save", str(out))
        finally:
            pool.shutdown()
    summary = {"mode": mode, "output_dir": str(out), "epochs": sec.epochs, **data_stats,
               "first": rows[0], "last": rows[-1]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _train_epoch(pool: ActorPool, epoch: int, steps: int, bar) -> dict:
    """Mean over the epoch's steps of the ranks' mean stats (equal slices: the batch mean)."""
    sums: dict[str, float] = {}
    for step in range(steps):
        per_rank = pool.call_all("train_step", epoch, step)
        for k in per_rank[0]:
            sums[k] = sums.get(k, 0.0) + sum(r[k] for r in per_rank) / len(per_rank)
        bar.update(1)
        acc = per_rank[0].get("accuracy", per_rank[0].get("reward_accuracy"))
        bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / (step + 1):.3f}", acc=f"{acc:.2f}")
    return {f"train/{k}": v / max(steps, 1) for k, v in sums.items()}


def _evaluate(pool: ActorPool, n_eval: int) -> dict:
    if not n_eval:
        return {}
    parts = pool.call_all("evaluate")
    return {f"eval/{k}": v for k, v in merge_weighted(parts).items()}


def _write(out: Path, row: dict) -> None:
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
