"""Preference learner: one rank of a data-parallel DeepSpeed group that trains a reward model
(`mode="rm"`) or a policy by DPO (`mode="dpo"`) on preference pairs.

Distribution: M of these form one torch.distributed group (gloo on CPU, NCCL on GPU), the
rendezvous as in actors/learner.py. The driver calls every method on every rank at once:
`train_step` runs one optimiser step in which each rank takes its slice of the same batch
(DeepSpeed averages the gradients); `evaluate` returns this rank's share of the held-out
means; `save` is collective (ZeRO-3 gathers) and rank 0 writes the HF folder.

- rm:  AutoModelForSequenceClassification(num_labels=1) on a causal-LM backbone; soft
       labels: cross-entropy on softmax of the two scores; hard: Bradley–Terry (+ margin).
- dpo: the policy, with a frozen copy of its initial weights as the reference; the
       reference's sequence logprobs of every pair are computed once in `setup` (each rank
       a share, then all-gathered) and the reference model is dropped.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from actors import process_group
from rlaif_ray.config import DPOConfig, RewardModelConfig
from rlaif_ray.modeling import DTYPES
from rlaif_ray.prompts import formatter_for
from rlaif_ray.preference_train import (Pairs, dpo_pair_loss, encode_dpo, encode_rm, epoch_batches, rank_rows,
                                        rm_pair_loss, sequence_logprobs)


def preference_deepspeed_config(section, dtype: str) -> dict:
    ds = {
        "train_batch_size": section.batch_size,
        "train_micro_batch_size_per_gpu": section.batch_size // section.num_workers,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": section.max_grad_norm,
        "zero_optimization": {"stage": section.zero_stage},
        "steps_per_print": 1 << 30,
    }
    if dtype == "bfloat16":
        ds["bf16"] = {"enabled": True}
    elif dtype == "float16":
        ds["fp16"] = {"enabled": True}
    return ds


class PreferenceLearnerWorker:
    def __init__(self, cfg: RewardModelConfig | DPOConfig, mode: str, rank: int, world_size: int):
        self.cfg, self.mode, self.rank, self.world = cfg, mode, rank, world_size
        self.sec = cfg.reward_model_train if mode == "rm" else cfg.dpo
        if mode == "rm":
            self.model_path = self.sec.backbone or cfg.model.policy
        else:
            self.model_path = self.sec.policy or cfg.model.policy
        self.name = f"{mode}-{rank}"

    def ping(self) -> str:
        return self.name

    def rendezvous_address(self) -> tuple[str, int]:
        """Rank 0's node address and a free port on that node, for the group's rendezvous."""
        return process_group.rendezvous_address()

    def setup(self, master_addr: str, master_port: int, data: dict) -> dict:
        """Join the group, build the engine, tokenize `data` = {"train": Pairs, "eval": Pairs}."""
        import deepspeed
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        start = time.perf_counter()
        hf_logging.disable_progress_bar()  # per-rank "Loading weights" bars would bury the run's own
        m = self.cfg.model
        process_group.join(master_addr, master_port, self.rank, self.world,
                           "nccl" if self.sec.resources.num_gpus > 0 else "gloo")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=m.trust_remote_code)
        if self.tokenizer.pad_token_id is None:  # e.g. Llama: pad with eos (the RM reads the last non-pad token)
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.mode == "dpo":  # prompts formatted exactly as the policy sees them in PPO (chat template etc.)
            self.formatter = formatter_for(self.tokenizer, self.cfg.data, self.model_path)
        torch.manual_seed(self.cfg.run.seed)  # the RM's new score head: the same on every rank
        kw = dict(dtype=DTYPES[m.dtype], trust_remote_code=m.trust_remote_code)
        if self.mode == "rm":
            module = AutoModelForSequenceClassification.from_pretrained(
                self.model_path, num_labels=1, pad_token_id=self.tokenizer.pad_token_id, **kw)
        else:
            module = AutoModelForCausalLM.from_pretrained(self.model_path, **kw)
        opt = torch.optim.AdamW(module.parameters(), lr=self.sec.lr, weight_decay=self.sec.weight_decay)
        self.engine, *_ = deepspeed.initialize(model=module, optimizer=opt,
                                               config=preference_deepspeed_config(self.sec, m.dtype))
        self.data = {k: self._encode(v) for k, v in data.items()}
        truncated = sum(d["truncated"] for d in self.data.values())
        if self.mode == "dpo":
            self._reference_logprobs(AutoModelForCausalLM.from_pretrained(self.model_path, **kw))
        n_train = len(self.data["train"]["pairs"])
        return {"steps_per_epoch": n_train // self.sec.batch_size, "data/truncated": truncated,
                "seconds": time.perf_counter() - start}

    def _encode(self, pairs: Pairs) -> dict:
        max_tokens = self.sec.max_tokens
        if self.mode == "rm":
            a, ta = encode_rm(self.tokenizer, pairs.prompts, pairs.responses_a, max_tokens)
            b, tb = encode_rm(self.tokenizer, pairs.prompts, pairs.responses_b, max_tokens)
            return {"pairs": pairs, "a": a, "b": b, "truncated": ta + tb}
        pa, ra, ta = encode_dpo(self.formatter, pairs.prompts, pairs.responses_a, max_tokens)
        pb, rb, tb = encode_dpo(self.formatter, pairs.prompts, pairs.responses_b, max_tokens)
        return {"pairs": pairs, "prompt_a": pa, "a": ra, "prompt_b": pb, "b": rb, "truncated": ta + tb}

    @torch.no_grad()
    def _reference_logprobs(self, reference) -> None:
        """log π_ref of both responses of every pair, once: this rank's share, then all-gathered."""
        reference.to(self.engine.device).eval()
        chunk = max(self.sec.batch_size // self.world, 1)
        for d in self.data.values():
            mine = rank_rows(len(d["pairs"]), self.rank, self.world)
            parts = []
            for s in range(0, len(mine), chunk):
                rows = mine[s: s + chunk]
                la = sequence_logprobs(reference, [d["prompt_a"][i] for i in rows], [d["a"][i] for i in rows])
                lb = sequence_logprobs(reference, [d["prompt_b"][i] for i in rows], [d["b"][i] for i in rows])
                parts.append(torch.stack([la, lb], 1).float().cpu().numpy())
            gathered = [None] * self.world
            torch.distributed.all_gather_object(gathered, np.concatenate(parts) if parts else np.zeros((0, 2), np.float32))
            ref = np.concatenate(gathered)  # (N, 2) rank shares are contiguous, in rank order
            d["ref_a"], d["ref_b"] = ref[:, 0], ref[:, 1]
        del reference

    def _loss(self, d: dict, rows: np.ndarray):
        pairs = d["pairs"]
        target = None if pairs.target_a is None else pairs.target_a[rows]
        if self.mode == "rm":
            return rm_pair_loss(self.engine, [d["a"][i] for i in rows], [d["b"][i] for i in rows],
                                self.tokenizer.pad_token_id, target, self.sec.margin)
        return dpo_pair_loss(self.engine, [d["prompt_a"][i] for i in rows], [d["a"][i] for i in rows],
                             [d["prompt_b"][i] for i in rows], [d["b"][i] for i in rows],
                             d["ref_a"][rows], d["ref_b"][rows], self.sec.beta, target)

    def train_step(self, epoch: int, step: int) -> dict:
        """One optimiser step on this rank's slice of batch `step` of `epoch` (all ranks at once)."""
        rows = epoch_batches(len(self.data["train"]["pairs"]), self.sec.batch_size, self.cfg.run.seed, epoch,
                             self.rank, self.world)[step]
        self.engine.train()
        loss, stats = self._loss(self.data["train"], rows)
        self.engine.backward(loss)
        self.engine.step()
        return {"loss": loss.item(), **{k: float(v) for k, v in stats.items()}}

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Held-out loss and stats over this rank's share: {"n": rows, key: mean}."""
        d = self.data["eval"]
        mine = rank_rows(len(d["pairs"]), self.rank, self.world)
        self.engine.eval()
        chunk = max(self.sec.batch_size // self.world, 1)
        # Every rank runs the same number of forwards: under ZeRO-3 each one is collective.
        n_chunks = -(-len(rank_rows(len(d["pairs"]), 0, self.world)) // chunk)
        sums: dict[str, float] = {}
        for c in range(n_chunks):
            rows = mine[c * chunk: (c + 1) * chunk]
            if not len(rows):
                self._loss(d, np.array([0]))  # keeps the collectives in step; result unused
                continue
            loss, stats = self._loss(d, rows)
            for k, v in {"loss": loss.item(), **{k: float(v) for k, v in stats.items()}}.items():
                sums[k] = sums.get(k, 0.0) + v * len(rows)
        return {"n": len(mine), **{k: v / max(len(mine), 1) for k, v in sums.items()}}

    def save(self, out_dir: str) -> str:
        """Collective: the full weights in HF format (+ tokenizer) into out_dir, written by rank 0
        into a temp folder first and moved in, so a crash leaves no half-written model."""
        import deepspeed

        module = self.engine.module
        params = list(module.named_parameters())
        if self.sec.zero_stage == 3:
            with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
                state = {n: p.detach().clone().cpu() for n, p in params}
        else:
            state = {n: p.detach().cpu() for n, p in params}
        if self.rank == 0:
            out = Path(out_dir)
            tmp = out / ".model-tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            if self.mode == "rm":
                module.config.pad_token_id = self.tokenizer.pad_token_id
            module.save_pretrained(tmp, state_dict=state)
            self.tokenizer.save_pretrained(tmp)
            for f in tmp.iterdir():
                f.replace(out / f.name)
            tmp.rmdir()
        return self.name
