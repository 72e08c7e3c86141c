"""Model-side helpers shared by the learner, the reference scorer and the probe.

Plain `transformers` models; no Ray here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from rlaif_ray.algorithms import entropy_from_logits
from rlaif_ray.batch import RolloutBatch, gather_response, model_inputs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_causal_lm(name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False):
    """`from_pretrained` by hub name or local path (the ordinary HF loading path)."""
    return AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)


class Critic(nn.Module):
    """Value model: the policy's transformer body and a scalar head per position.

    V(s_t) for every position; initialised from the policy's body (a common PPO choice: the
    critic starts with the policy's features), the head at zero so initial values are 0.
    """

    def __init__(self, name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__()
        self.body = AutoModel.from_pretrained(name_or_path, dtype=DTYPES[dtype],
                                              trust_remote_code=trust_remote_code)
        self.head = nn.Linear(self.body.config.hidden_size, 1, dtype=DTYPES[dtype])
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask):
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden).squeeze(-1)  # (B, L)

    def save(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        self.body.save_pretrained(out_dir)
        torch.save(self.head.state_dict(), out_dir / "value_head.pt")


def response_logprobs(model, batch: RolloutBatch, temperature: float = 1.0,
                      with_entropy: bool = False):
    """Teacher-forced log π(a_t | s_t) of the batch's responses.

    Returns logp (B, T) and, if asked, entropy (B, T) of π(· | s_t); both 0 on padding.
    Logits are divided by the sampling temperature so they describe the distribution the
    rollout engine actually sampled from (vLLM's processed logprobs).
    """
    device = next(model.parameters()).device
    ids, attn = (t.to(device) for t in model_inputs(batch))
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)                       # (B, L-1, V)
    targets = ids[:, 1:]                                                # (B, L-1)
    token_logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)   # (B, L-1)
    mask = torch.from_numpy(batch.response_mask()).to(device)
    logp = gather_response(token_logp, batch) * mask
    if not with_entropy:
        return logp
    ent = gather_response(entropy_from_logits(logits), batch) * mask
    return logp, ent


def response_values(critic: Critic, batch: RolloutBatch) -> torch.Tensor:
    """V(s_t) (B, T): the value of the state *before* each response token, 0 on padding."""
    device = next(critic.parameters()).device
    ids, attn = (t.to(device) for t in model_inputs(batch))
    values = critic(ids, attn)[:, :-1]
    return gather_response(values, batch) * torch.from_numpy(batch.response_mask()).to(device)


@torch.no_grad()
def batched_response_logprobs(model, batch: RolloutBatch, chunk: int, temperature: float = 1.0):
    """`response_logprobs` in chunks of rows (bounded activation memory), as numpy."""
    parts = []
    for start in range(0, len(batch), chunk):
        rows = list(range(start, min(start + chunk, len(batch))))
        parts.append(response_logprobs(model, batch.select(rows), temperature).float().cpu().numpy())
    return _stack_rows(parts, batch.max_response_len)


@torch.no_grad()
def batched_response_values(critic: Critic, batch: RolloutBatch, chunk: int):
    parts = []
    for start in range(0, len(batch), chunk):
        rows = list(range(start, min(start + chunk, len(batch))))
        parts.append(response_values(critic, batch.select(rows)).float().cpu().numpy())
    return _stack_rows(parts, batch.max_response_len)


def _stack_rows(parts, width):
    import numpy as np

    return np.concatenate(parts).astype("float32") if parts else np.zeros((0, width), "float32")


# Tokens per KV-cache block of a CPU engine (a sequence holds whole blocks; EngineSpec.build
# sets it): the smallest the CPU attention backend takes (a multiple of 32), where vLLM's CPU
# default is 128. Measured on 2 cores: decoding 64 sequences × 32 tokens of the ~75M bench
# model took 6.6 s instead of 10.1 s per call; the prefix cache reuses whole blocks, so a
# labeler's follow-up call per candidate prefix (" 1" then "0" where a tokenizer splits " 10")
# recomputes < 32 tokens instead of < 128 (SmolLM2, 8 prompts of 200 tokens: 0.28 s instead
# of 1.5 s), and the n samples of one prompt share its whole blocks. GPU engines keep vLLM's
# default and size their cache from gpu_memory_utilization.
CPU_KV_BLOCK_TOKENS = 32


def kv_bytes_per_token(model_path: str, dtype: str, trust_remote_code: bool = False) -> int:
    """KV-cache bytes one token takes in a dense-attention decoder:

        bytes/token = 2 (K and V) × layers × kv_heads × head_dim × bytes per element
    """
    conf = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    conf = getattr(conf, "text_config", None) or conf
    heads = conf.num_attention_heads
    kv_heads = getattr(conf, "num_key_value_heads", None) or heads
    head_dim = getattr(conf, "head_dim", None) or conf.hidden_size // heads
    return 2 * conf.num_hidden_layers * kv_heads * head_dim * DTYPES[dtype].itemsize


def kv_cache_mib_for(bytes_per_token: int, sequences: int, tokens_per_sequence: int,
                     block_tokens: int = CPU_KV_BLOCK_TOKENS) -> int:
    """The KV cache (MiB, rounded up) that holds `sequences` sequences of up to
    `tokens_per_sequence` tokens at once, each in whole blocks:

        MiB = ⌈sequences × ⌈tokens/block⌉ × block × bytes/token / 2^20⌉
    """
    blocks = sequences * -(-tokens_per_sequence // block_tokens)
    return -(-blocks * block_tokens * bytes_per_token // 2**20)


def kv_cache_sequences(kv_cache_mib: int, bytes_per_token: int, tokens_per_sequence: int,
                       block_tokens: int = CPU_KV_BLOCK_TOKENS) -> int:
    """How many sequences of `tokens_per_sequence` tokens a KV cache of `kv_cache_mib` holds
    at once (the inverse of `kv_cache_mib_for`)."""
    blocks = kv_cache_mib * 2**20 // (block_tokens * bytes_per_token)
    return blocks // -(-tokens_per_sequence // block_tokens)


# An automatically sized KV cache takes at most this share of the node's RAM per engine: the
# engines, the learners and the reference share a CPU node, and a cache that does not fit
# everything at once only makes generation run in waves, where too much RAM kills the node.
AUTO_KV_MAX_RAM_SHARE = 0.125


@dataclass(frozen=True)
class KvCachePlan:
    mib: int         # what the engine gets
    needed_mib: int  # what holds every sequence of one call at once
    holds: int       # sequences `mib` holds at once
    sequences: int   # sequences one call runs

    @property
    def in_waves(self) -> bool:
        return self.holds < self.sequences


def plan_kv_cache(model_path: str, dtype: str, configured_mib: int | None, sequences: int, tokens_per_sequence: int,
                  trust_remote_code: bool = False) -> KvCachePlan:
    """The CPU engine's KV cache: `configured_mib`, or (None) enough for `sequences`
    sequences of `tokens_per_sequence` tokens at once, capped at AUTO_KV_MAX_RAM_SHARE of RAM."""
    per_token = kv_bytes_per_token(model_path, dtype, trust_remote_code)
    needed = kv_cache_mib_for(per_token, sequences, tokens_per_sequence)
    if configured_mib is None:
        ram_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
        configured_mib = max(1, min(needed, int(ram_mib * AUTO_KV_MAX_RAM_SHARE)))
    return KvCachePlan(configured_mib, needed, kv_cache_sequences(configured_mib, per_token, tokens_per_sequence),
                       sequences)


def max_positions(model_path: str, trust_remote_code: bool = False) -> int:
    """The longest sequence the model's config allows (`max_position_embeddings`; a model
    that names none is taken as unbounded, 2^20)."""
    conf = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    return int(getattr(conf, "max_position_embeddings", 1 << 20))
