"""Reward-model scorer: an HF sequence-classification model that rewards PPO samples.

Distribution: one pool per `reward_model` / `classifier` source (`reward.sources[k]`); the
driver hands each actor a slice of the rollout shards' refs, and `scores` returns an
ObjectRef of a (B,) float32 array plus small stats, like the labeler's `direct_rewards`.

Input text: rm_text(prompt, response) = "prompt\\nresponse" — exactly what
`rlaif-ray train-rm` trains on (rlaif_ray/preference_train.py) — or the response alone
with `response_only: true` (e.g. a toxicity classifier that reads a single text).

Reward, from the pooled logits z (B, C):
    reward_model:  r = z[:, 0]                 (a scalar RM: num_labels = 1)
    classifier:    r = z[:, c]                 output logit
                   r = softmax(z)[:, c]        output prob (σ(z[:, 0]) when C = 1)
with c = class_label (an index, or a name looked up in the model's label2id).
"""

from __future__ import annotations

import time

import numpy as np
import ray
import torch

from rlaif_ray.batch import RolloutBatch
from rlaif_ray.config import RewardSource, TrainConfig
from rlaif_ray.modeling import DTYPES
from rlaif_ray.preference_train import encode_rm, pad_right


def resolve_class_label(source: RewardSource, num_labels: int, label2id: dict, field: str) -> int:
    """The column of the logits that is this source's reward; errors name the field."""
    if source.kind == "reward_model":
        if num_labels != 1:
            raise ValueError(f"{field}.model: {source.model} has {num_labels} labels; a reward_model source needs "
                             f"num_labels=1 (use kind classifier with class_label for a classifier)")
        return 0
    c = source.class_label
    if isinstance(c, str) and not c.lstrip("-").isdigit():
        if c not in label2id:
            raise ValueError(f"{field}.class_label: {c!r} is not a label of {source.model} (labels: {sorted(label2id)})")
        c = label2id[c]
    c = int(c)
    if not 0 <= c < num_labels:
        raise ValueError(f"{field}.class_label: {c} is out of range for {source.model} ({num_labels} labels)")
    return c


def rewards_from_logits(logits: torch.Tensor, column: int, output: str) -> torch.Tensor:
    """(B,) reward from (B, C) logits: the column's logit, or its probability."""
    logits = logits.float()
    if output == "logit":
        return logits[:, column]
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=-1)[:, column]


class RewardModelActor:
    def __init__(self, cfg: TrainConfig, source_index: int, rank: int):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.source = cfg.reward.sources[source_index]
        self.name = f"{self.source.label}-{rank}"
        field = f"reward.sources.{source_index}"
        trust = cfg.model.trust_remote_code
        self.device = "cuda" if self.source.resources.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self.source.model, trust_remote_code=trust)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.source.model, dtype=DTYPES[cfg.model.dtype], trust_remote_code=trust).to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # HF pools at the last token that is not padding
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.column = resolve_class_label(self.source, self.model.config.num_labels,
                                          dict(self.model.config.label2id or {}), field)
        positions = getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length
        self.max_tokens = int(min(positions, self.tokenizer.model_max_length))
        self.output = "logit" if self.source.kind == "reward_model" else self.source.output

    def ping(self) -> str:
        return self.name

    @ray.method(num_returns=2)
    def scores(self, shard_refs: list) -> tuple[np.ndarray, dict]:
        """(B,) float32 rewards of every sample of the given shards, in order."""
        start = time.perf_counter()
        batch = RolloutBatch.concat(ray.get(list(shard_refs)))
        if self.source.response_only:
            ids = self.tokenizer(list(batch.responses), truncation=True, max_length=self.max_tokens)["input_ids"]
        else:
            ids, _ = encode_rm(self.tokenizer, batch.prompts, batch.responses, self.max_tokens)
        out = []
        with torch.no_grad():
            for s in range(0, len(ids), self.source.batch_size):
                x, attn = pad_right(ids[s: s + self.source.batch_size], self.tokenizer.pad_token_id)
                logits = self.model(input_ids=x.to(self.device), attention_mask=attn.to(self.device)).logits
                out.append(rewards_from_logits(logits, self.column, self.output).cpu().numpy())
        rewards = np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
        return rewards, {"seconds": time.perf_counter() - start, "actor": self.name}
