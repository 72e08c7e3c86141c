"""Learner worker: one rank of a data-parallel DeepSpeed group holding the policy (and critic).

Distribution: M of these form one torch.distributed group (gloo on CPU, NCCL on GPU). The
driver calls every method on every rank at once (collectives inside); each rank works on
its own slice of rows and rank 0 answers for the group where one answer is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import ray
import torch

from actors import process_group
from rlaif_ray.algorithms import corrected_policy_loss, kl_penalty_loss, masked_mean, ppo_policy_loss, ppo_value_loss
from rlaif_ray.batch import RolloutBatch
from rlaif_ray.config import RunConfig
from rlaif_ray.experience import build_experience, display_samples
from rlaif_ray.rewards import function_rewards
from rlaif_ray.modeling import (Critic, batched_response_values, load_causal_lm, response_logprobs,
                                response_values)
from rlaif_ray.weight_sync import make_sender, probe


def deepspeed_config(cfg: RunConfig) -> dict:
    micro = cfg.ppo.minibatch_size // cfg.learner.num_workers
    ds = {
        "train_batch_size": cfg.ppo.minibatch_size,
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


class LearnerWorker:
    def __init__(self, cfg: RunConfig, rank: int, world_size: int):
        self.cfg, self.rank, self.world = cfg, rank, world_size
        self.name = f"learner-{rank}"

    def rendezvous_address(self) -> tuple[str, int]:
        """Rank 0's node address and a free port on that node, for the group's rendezvous."""
        return process_group.rendezvous_address()

    def setup(self, master_addr: str, master_port: int) -> str:
        """Join the process group and build the DeepSpeed engines (all ranks at once)."""
        cfg = self.cfg
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
        self.exp = None
        self.iteration = 0
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

    @ray.method(num_returns=2)
    def old_logprobs_and_values(self, shard_refs: list) -> tuple[dict, dict]:
        """This rank's rows: log π_old, entropy and (PPO) V_old, each (rows, T) float32."""
        start = time.perf_counter()
        batch = RolloutBatch.concat(ray.get(list(shard_refs)))
        mine = batch.select(self._my_rows(len(batch)))
        temp = self.cfg.rollout.sampling.temperature
        chunk = self.cfg.learner.forward_batch_size
        logp, ent = [], []
        with torch.no_grad():
            for s in range(0, len(mine), chunk):
                sub = mine.select(np.arange(s, min(s + chunk, len(mine))))
                lp, e = response_logprobs(self.policy, sub, temp, with_entropy=True)
                logp.append(lp.float().cpu().numpy())
                ent.append(e.float().cpu().numpy())
        T = batch.max_response_len
        out = {"old_logp": _cat(logp, T), "entropy": _cat(ent, T), "values": None}
        if self.critic is not None:
            out["values"] = batched_response_values(self.critic, mine, chunk)
        return out, {"seconds": time.perf_counter() - start, "actor": self.name}

    def prepare_experience(self, shard_refs: list, reward_refs: list, ref_logp_refs: list,
                           old_refs: list, kl_coef: float, iteration: int, scorer_refs: dict | None = None) -> dict:
        """Assemble the whole scored batch and compute advantages; keeps it for `train`.

        `scorer_refs`: {source name: [(B_i,) reward refs in row order]} of the
        reward_model / classifier sources. Returns the stats and, under "samples",
        `run.log_samples` rows to show (iteration `iteration` + 1, as the driver numbers it)."""
        start = time.perf_counter()
        batch = RolloutBatch.concat(ray.get(list(shard_refs)))
        per_source = {}
        for source in self.cfg.reward.sources:
            if source.kind == "labeler_direct":
                per_source[source.label] = np.concatenate(ray.get(list(reward_refs)))
            elif source.kind in ("reward_model", "classifier"):
                per_source[source.label] = np.concatenate(ray.get(list(scorer_refs[source.label])))
            else:
                per_source[source.label] = function_rewards(source, batch.prompts, batch.responses)
        ref_logp = np.concatenate(ray.get(list(ref_logp_refs)))
        olds = ray.get(list(old_refs))
        values = np.concatenate([o["values"] for o in olds]) if self.critic is not None else None
        self.exp, stats = build_experience(
            self.cfg, batch, per_source, ref_logp, np.concatenate([o["old_logp"] for o in olds]),
            values, np.concatenate([o["entropy"] for o in olds]), kl_coef)
        self.kl_coef, self.iteration = kl_coef, iteration
        # A few rows for a person to read; not numbers: the driver takes them out of the metrics.
        stats["samples"] = display_samples(self.cfg, self.exp, per_source, iteration + 1)
        stats["seconds"] = time.perf_counter() - start
        return stats

    def train(self) -> dict:
        """PPO epochs over minibatches of the prepared experience; returns mean stats."""
        start = time.perf_counter()
        exp, p = self.exp, self.cfg.ppo
        n, mb = len(exp.batch), p.minibatch_size
        per_rank = mb // self.world
        rows_done = 0
        sums: dict[str, float] = {}
        steps = 0
        for epoch in range(p.epochs):
            # Same permutation on every rank (seeded by run, iteration, epoch): ranks take
            # disjoint slices of the same minibatch, so DeepSpeed averages their gradients.
            perm = np.random.default_rng([self.cfg.run.seed, self.iteration, epoch]).permutation(n)
            for m in range(n // mb):
                rows = perm[m * mb: (m + 1) * mb][self.rank * per_rank: (self.rank + 1) * per_rank]
                for k, v in self._train_step(np.sort(rows)).items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
                rows_done += len(rows)
        out = {k: v / max(steps, 1) for k, v in sums.items()}
        out.update({"train/steps": steps, "seconds": time.perf_counter() - start})
        return out

    def _train_step(self, rows: np.ndarray) -> dict:
        exp, p = self.exp, self.cfg.ppo
        sub = exp.batch.select(rows)
        mask, old, adv = exp.mask[rows], exp.old_logp[rows], exp.advantages[rows]
        logp, ent = response_logprobs(self.policy, sub, self.cfg.rollout.sampling.temperature, with_entropy=True)
        dev = logp.device
        mask, old, adv = mask.to(dev), old.to(dev), adv.to(dev)
        if p.off_policy_correction == "none":
            pg_loss, st = ppo_policy_loss(logp, old, adv, mask, p.clip)
        else:  # weight each token by π_old/π_behaviour (the engine that sampled it), see off_policy.py
            behaviour = torch.from_numpy(exp.batch.rollout_logp[rows]).to(dev)
            pg_loss, st = corrected_policy_loss(logp, old, behaviour, adv, mask, p.clip,
                                                p.off_policy_correction, p.importance_cap)
        loss = pg_loss - p.entropy_coef * masked_mean(ent, mask)
        if self.cfg.kl.placement == "loss":
            loss = loss + self.kl_coef * kl_penalty_loss(logp, exp.ref_logp[rows].to(dev), mask, self.cfg.kl.estimator)
        self.policy.backward(loss)
        self.policy.step()
        stats = {"loss/policy": pg_loss.item(), "clipfrac": float(st["clipfrac"]),
                 "approx_kl": float(st["approx_kl"])}
        if p.off_policy_correction != "none":
            # Per minibatch of this rank, so its own key: experience's off_policy/* cover the whole batch.
            stats["off_policy/train_weight_mean"] = float(st["weight_mean"])
        if self.critic is not None:
            v = response_values(self.critic, sub)
            vloss = ppo_value_loss(v, exp.values[rows].to(dev), exp.returns[rows].to(dev), mask, p.value_clip)
            self.critic.backward(p.value_coef * vloss)
            self.critic.step()
            stats["loss/value"] = vloss.item()
        return stats

    def train_sft(self, shard_refs: list, best_rows: list[int], round_index: int = 0) -> dict:
        """Rejection sampling's fine-tune on the kept samples (rows of the concatenated shards).

        loss = −Σ_t m_t·log π(a_t | s_t) / Σ_t m_t over a minibatch's response tokens (T = 1:
        the policy's own distribution), `rejection_sampling.sft_epochs` passes in minibatches
        of `ppo.minibatch_size` rows (the driver sets it from rejection_sampling.minibatch_size);
        like `train`, every rank takes its slice of the same seeded permutation, so DeepSpeed
        averages their gradients. Collective: call on every rank. A last partial minibatch is
        skipped (every rank must step together).
        """
        start = time.perf_counter()
        kept = RolloutBatch.concat(ray.get(list(shard_refs))).select(np.asarray(best_rows, dtype=np.int64))
        mb = self.cfg.ppo.minibatch_size
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
