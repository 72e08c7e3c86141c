"""Learner worker: one rank of a data-parallel DeepSpeed group holding the policy (and critic).

Distribution: M of these form one torch.distributed group (gloo on CPU, NCCL on GPU). The
driver calls every method on every rank at once (collectives inside); each rank works on
its own slice of rows and rank 0 answers for the group where one answer is needed.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
import ray
import torch

from actors import process_group
from rlaif_ray.algorithms import Minibatch, ObjectiveSettings, masked_mean, ppo_objective
from rlaif_ray.batch import RolloutBatch
from rlaif_ray.config import RolesConfig, TrainConfig
from rlaif_ray.experience import Experience, build_experience, display_samples
from rlaif_ray.rewards import batch_rewards
from rlaif_ray.modeling import (Critic, batched_response_values, load_causal_lm, response_logprobs,
                                response_values)
from rlaif_ray.weight_sync import make_sender, probe


def deepspeed_config(cfg: RolesConfig) -> dict:
    micro = cfg.minibatch_size // cfg.learner.num_workers
    ds = {
        "train_batch_size": cfg.minibatch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.learner.max_grad_norm,
        "zero_optimization": {"stage": cfg.learner.zero_stage},
        "steps_per_print": 1 << 30,
    }
    if cfg.model.dtype == "bfloat16":
        ds["bf16"] = {"enabled": True}
    elif cfg.model.dtype == "float16":
        ds["fp16"] = {"enabled": True}
    return ds


def objective_settings(cfg: TrainConfig) -> ObjectiveSettings:
    """The PPO objective's settings, from the ppo and kl sections."""
    p = cfg.ppo
    return ObjectiveSettings(clip=p.clip, entropy_coef=p.entropy_coef, kl_in_loss=cfg.kl.placement == "loss",
                             kl_estimator=cfg.kl.estimator, correction=p.off_policy_correction,
                             importance_cap=p.importance_cap, value_clip=p.value_clip, value_coef=p.value_coef)


class LearnerWorker:
    def __init__(self, cfg: RolesConfig, rank: int, world_size: int):
        self.rank, self.world = rank, world_size
        self.name = f"learner-{rank}"
        self.policy = self.critic = self.sender = None
        self.reset(cfg, rank, world_size)

    @staticmethod
    def reuse_key(cfg: RolesConfig, rank: int, world_size: int) -> tuple:
        """Workers of equal keys are interchangeable after `reset` (rlaif_ray.driver.warm): the
        process group outlives a run; the engines are built anew by `setup`."""
        return world_size, cfg.dist_backend

    def reset(self, cfg: RolesConfig, rank: int, world_size: int) -> str:
        """Serve a new run: drop the last run's engines (and their optimiser state); `setup`
        builds this run's."""
        self.cfg = cfg
        if self.policy is not None:
            self.policy = self.critic = self.sender = None
            gc.collect()
        return self.name

    def rendezvous_address(self) -> tuple[str, int]:
        """Rank 0's node address and a free port on that node, for the group's rendezvous."""
        return process_group.rendezvous_address()

    def setup(self, master_addr: str, master_port: int) -> str:
        """Join the process group and build the DeepSpeed engines (all ranks at once)."""
        cfg = self.cfg
        if not process_group.joined():  # a kept worker (driver/warm.py) is in its group already
            process_group.join(master_addr, master_port, self.rank, self.world, cfg.dist_backend)
        torch.manual_seed(cfg.run.seed)
        ds_cfg = deepspeed_config(cfg)
        self.policy = self._engine(load_causal_lm(cfg.model.policy, cfg.model.dtype, cfg.model.trust_remote_code),
                                   cfg.learner.lr, ds_cfg)
        self.critic = None
        if cfg.uses_critic:
            self.critic = self._engine(Critic(cfg.model.policy, cfg.model.dtype, cfg.model.trust_remote_code),
                                       cfg.learner.critic_lr, ds_cfg)
        self.sender = make_sender(cfg.sync, self.policy.module, cfg.learner.zero_stage, self.rank)
        return self.name

    def _engine(self, module, lr, ds_cfg):
        import deepspeed

        opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=self.cfg.learner.weight_decay)
        engine, *_ = deepspeed.initialize(model=module, optimizer=opt, config=ds_cfg)
        return engine

    def ping(self) -> str:
        return self.name

    def _my_rows(self, n: int) -> np.ndarray:
        return np.array_split(np.arange(n), self.world)[self.rank]

    def ppo_step(self, shard_refs: list, source_refs: dict[str, list], ref_logp_refs: list,
                 kl_coef: float, iteration: int) -> dict:
        """One PPO iteration's learning on every rank at once; all it reads is passed in.

            π_old, H, V_old   this rank's rows before any update, then all-gathered
            rewards           every source weighted and summed, once (rank 0, then broadcast)
            experience        KL shaping and advantages over the whole batch (experience.py)
            optimise          ppo.epochs passes of minibatch steps on `ppo_objective`

        `source_refs`: {source name: [(B_i,) reward refs in row order]} of every source a
        model scores (labeler, reward models, classifiers); `function` sources are computed
        here. Returns {"experience": stats of the batch (rank 0; None elsewhere), "train":
        this rank's mean step stats, "samples": `run.log_samples` rows to show (rank 0),
        "seconds": per phase}.
        """
        clock = _Clock()
        batch = RolloutBatch.concat(ray.get(list(shard_refs)))
        old_logp, entropy, values = self._old_logprobs_and_values(batch)
        clock.lap("old_logprobs")
        total, per_source, source_stats = self._rewards_once(batch, source_refs)
        ref_logp = np.concatenate(ray.get(list(ref_logp_refs)))
        exp, stats = build_experience(self.cfg, batch, total, source_stats, ref_logp, old_logp, values, entropy, kl_coef)
        samples = display_samples(self.cfg, exp, per_source, total, iteration + 1) if self.rank == 0 else []
        clock.lap("experience")
        train_stats = self._optimise(exp, kl_coef, iteration)
        clock.lap("optimise")
        return {"experience": stats if self.rank == 0 else None, "train": train_stats, "samples": samples,
                "seconds": clock.laps}

    def _old_logprobs_and_values(self, batch: RolloutBatch) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """log π_old, entropy and (PPO) V_old of every row, each (B, T) float32: this rank
        computes its own slice of the rows, the group all-gathers them. With
        `ppo.old_logprobs: rollout`, log π_old is the engine's sampling logprobs and no policy
        forward runs here (entropy None: `_optimise` measures it)."""
        from_learner = self.cfg.ppo.old_logprobs == "learner"
        if not from_learner and self.critic is None:  # nothing to compute: no forward, no gather
            # A copy: the batch's arrays are read-only views of the object store.
            return batch.rollout_logp.astype(np.float32), None, None
        mine = batch.select(self._my_rows(len(batch)))
        chunk = self.cfg.learner.forward_batch_size
        part = (self._policy_logprobs(mine) if from_learner else None,
                batched_response_values(self.critic, mine, chunk) if self.critic is not None else None)
        parts = process_group.all_gather_objects(part, self.world)
        values = np.concatenate([p[1] for p in parts]) if self.critic is not None else None
        if not from_learner:
            return batch.rollout_logp.astype(np.float32), None, values
        old_logp, entropy = (np.concatenate([p[0][i] for p in parts]) for i in (0, 1))
        return old_logp, entropy, values

    def _policy_logprobs(self, rows: RolloutBatch) -> tuple[np.ndarray, np.ndarray]:
        """log π and entropy (each (B, T) float32) of `rows` under the current policy, in chunks."""
        temp, chunk = self.cfg.rollout.sampling.temperature, self.cfg.learner.forward_batch_size
        logp, ent = [], []
        with torch.no_grad():
            for s in range(0, len(rows), chunk):
                sub = rows.select(np.arange(s, min(s + chunk, len(rows))))
                lp, e = response_logprobs(self.policy, sub, temp, with_entropy=True)
                logp.append(lp.float().cpu().numpy())
                ent.append(e.float().cpu().numpy())
        T = rows.max_response_len
        return _cat(logp, T), _cat(ent, T)

    def _rewards_once(self, batch: RolloutBatch, source_refs: dict[str, list]) -> tuple:
        """(total, per_source, stats) of `rewards.batch_rewards`, computed on rank 0 only (a
        `function` source may be slow or call out) and broadcast to the other ranks."""
        result = None
        if self.rank == 0:
            scored = {label: np.concatenate(ray.get(list(refs))) for label, refs in source_refs.items()}
            result = batch_rewards(self.cfg.reward.sources, batch.prompts, batch.responses, scored)
        return process_group.broadcast_object(result, self.rank, self.world)

    def _optimise(self, exp: Experience, kl_coef: float, iteration: int) -> dict:
        """`ppo.epochs` passes over minibatches of the experience; mean stats of the steps."""
        p, objective = self.cfg.ppo, objective_settings(self.cfg)
        n, mb = len(exp.batch), p.minibatch_size
        per_rank = mb // self.world
        sums: dict[str, float] = {}
        steps = 0
        entropy = []  # the first epoch's, when π_old came from the engine (no pre-update forward)
        for epoch in range(p.epochs):
            # Same permutation on every rank (seeded by run, iteration, epoch): ranks take
            # disjoint slices of the same minibatch, so DeepSpeed averages their gradients.
            perm = np.random.default_rng([self.cfg.run.seed, iteration, epoch]).permutation(n)
            for m in range(n // mb):
                rows = perm[m * mb: (m + 1) * mb][self.rank * per_rank: (self.rank + 1) * per_rank]
                stats = self._step(exp, np.sort(rows), objective, kl_coef)
                step_entropy = stats.pop("entropy")
                if epoch == 0 and p.old_logprobs == "rollout":
                    entropy.append(step_entropy)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
        out = {k: v / max(steps, 1) for k, v in sums.items()}
        out["train/steps"] = steps
        if entropy:
            out["entropy"] = float(np.mean(entropy))
        return out

    def _step(self, exp: Experience, rows: np.ndarray, objective: ObjectiveSettings, kl_coef: float) -> dict:
        """One optimiser step of the policy (and critic) on `rows` of the experience."""
        sub = exp.batch.select(rows)
        logp, ent = response_logprobs(self.policy, sub, self.cfg.rollout.sampling.temperature, with_entropy=True)
        dev = logp.device
        on = lambda x: x[rows].to(dev) if x is not None else None  # noqa: E731
        corrected = objective.correction != "none"
        mb = Minibatch(logp=logp, entropy=ent, old_logp=on(exp.old_logp), advantages=on(exp.advantages),
                       mask=on(exp.mask), ref_logp=on(exp.ref_logp) if objective.kl_in_loss else None,
                       behaviour_logp=torch.from_numpy(exp.batch.rollout_logp[rows]).to(dev) if corrected else None)
        if self.critic is not None:
            mb.values, mb.old_values, mb.returns = response_values(self.critic, sub), on(exp.values), on(exp.returns)
        policy_loss, value_loss, stats = ppo_objective(mb, objective, kl_coef)
        stats["entropy"] = float(masked_mean(ent.detach(), mb.mask))
        self.policy.backward(policy_loss)
        self.policy.step()
        if value_loss is not None:
            self.critic.backward(value_loss)
            self.critic.step()
        return stats

    def train_sft(self, shard_refs: list, best_rows: list[int], round_index: int = 0) -> dict:
        """Rejection sampling's fine-tune on the kept samples (rows of the concatenated shards).

        loss = −Σ_t m_t·log π(a_t | s_t) / Σ_t m_t over a minibatch's response tokens (T = 1:
        the policy's own distribution), `rejection_sampling.sft_epochs` passes in minibatches
        of `rejection_sampling.minibatch_size` rows;
        like `train`, every rank takes its slice of the same seeded permutation, so DeepSpeed
        averages their gradients. Collective: call on every rank. A last partial minibatch is
        skipped (every rank must step together).
        """
        start = time.perf_counter()
        kept = RolloutBatch.concat(ray.get(list(shard_refs))).select(np.asarray(best_rows, dtype=np.int64))
        mb = self.cfg.rejection_sampling.minibatch_size
        per_rank = mb // self.world
        losses, tokens = [], 0
        for epoch in range(self.cfg.rejection_sampling.sft_epochs):
            perm = np.random.default_rng([self.cfg.run.seed, round_index, epoch]).permutation(len(kept))
            for m in range(len(kept) // mb):
                rows = np.sort(perm[m * mb: (m + 1) * mb][self.rank * per_rank: (self.rank + 1) * per_rank])
                sub = kept.select(rows)
                logp = response_logprobs(self.policy, sub, 1.0)                  # (rows, T)
                mask = torch.from_numpy(sub.response_mask()).to(logp.device)    # (rows, T)
                loss = -masked_mean(logp, mask)
                self.policy.backward(loss)
                self.policy.step()
                losses.append(loss.item())
                tokens += int(sub.response_lens.sum())
        return {"sft/loss": float(np.mean(losses)) if losses else float("nan"), "sft/steps": len(losses),
                "sft/tokens": tokens, "seconds": time.perf_counter() - start}

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(self, directory: str, tokenizer_source: str) -> None:
        """All ranks: DeepSpeed state (weights, optimiser) of policy and critic; rank 0 also
        exports the policy in HF format. Collective: call on every rank."""
        directory = Path(directory)
        self.policy.save_checkpoint(str(directory / "learner"), tag="policy")
        if self.critic is not None:
            self.critic.save_checkpoint(str(directory / "learner"), tag="critic")
        named = self.named_weights()
        if self.rank == 0:
            from transformers import AutoTokenizer

            self.policy.module.save_pretrained(directory / "hf", state_dict=dict(named))
            AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(directory / "hf")

    def named_weights(self):
        """(name, full tensor) of the policy in HF checkpoint names; collective under ZeRO-3."""
        import deepspeed

        module = self.policy.module
        params = list(module.named_parameters())
        if self.cfg.learner.zero_stage == 3:
            with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
                return [(n, p.detach().clone().cpu()) for n, p in params]
        return [(n, p.detach().cpu()) for n, p in params]

    def load_checkpoint(self, directory: str) -> None:
        directory = Path(directory) / "learner"
        self.policy.load_checkpoint(str(directory), tag="policy")
        if self.critic is not None:
            self.critic.load_checkpoint(str(directory), tag="critic")

    # ----------------------------------------------------------------- weight sync

    def weight_sender(self, method: str, *args):
        """Run `method` of this rank's weight sender: the driver end of weight sync calls it
        (rlaif_ray.weight_sync holds the protocol; this actor only holds the sender)."""
        return getattr(self.sender, method)(*args)

    def probe_logprobs(self, prompt_ids: list[int], token_ids: list[int]) -> list[float]:
        """The weight-sync probe's learner end (rlaif_ray.weight_sync.probe)."""
        return probe.learner_logprobs(self.policy, prompt_ids, token_ids)

    def generate_greedy(self, prompt_ids: list[list[int]], max_tokens: int) -> list[list[int]]:
        """Greedy continuations with the learner's weights, never stopping at eos (like the
        engines' `ignore_eos`), for checks against the rollout engines."""
        module = self.policy.module
        device = next(module.parameters()).device
        outs = []
        with torch.no_grad():
            for p in prompt_ids:
                ids = torch.tensor([p], device=device)
                for _ in range(max_tokens):
                    nxt = module(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
                    ids = torch.cat([ids, nxt], dim=1)
                outs.append(ids[0, len(p):].tolist())
        return outs


def _cat(parts, width):
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, width), np.float32)


class _Clock:
    """Seconds of consecutive phases: `lap(name)` closes the phase that started at the last lap."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self._last = now - self._last, now
