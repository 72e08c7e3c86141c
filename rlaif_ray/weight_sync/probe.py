"""The weight-sync probe: a fixed prompt both rollout engine 0 and the learner score.

After every sync, engine 0 samples PROBE_NEW_TOKENS tokens from the probe prompt and the
learner scores the same tokens teacher-forced; their max |logprob difference| is the metric
`sync/max_logprob_diff`. The prompt is longer than one KV block (32 tokens on CPU, 128 for
vLLM's own CPU default, 16 on GPU), so it is really held in vLLM's prefix cache: KV left over
from old weights shows up in the difference.

What it reads (bench/probe_bounds.py, docs/weight-sync.md): with the learner's exact weights
only the two implementations' rounding, ~2e-6 (tiny models) to 1.6e-5 (SmolLM2-135M) in fp32
and 0.04..0.46 in bf16; after a broken sync, in proportion to how far the weights moved
since the engine's copy was right. `judge_probe` compares it with `sync.probe_bound` (per-dtype defaults in
rlaif_ray/config/training.py) and says what `sync.probe_action` asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from rlaif_ray.batch import build_shard
from rlaif_ray.modeling import response_logprobs

PROBE_TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank. "
PROBE_PROMPT_TOKENS = 136
PROBE_NEW_TOKENS = 8


def probe_prompt(tokenizer) -> list[int]:
    piece = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    ids: list[int] = []
    while len(ids) < PROBE_PROMPT_TOKENS:
        ids += piece
    return ids[:PROBE_PROMPT_TOKENS]


@dataclass(frozen=True)
class ProbeVerdict:
    action: Literal["ok", "warn", "stop"]
    message: str  # one line naming the engine, the figure and the bound; "" when ok


def judge_probe(diff: float, bound: float, action: Literal["warn", "stop"], engine: str = "rollout-0") -> ProbeVerdict:
    """The probe reading `diff` against `bound`: ok, or `action` with its message.

    A non-finite reading (NaN logprobs on either side) is never ok.
    """
    if math.isfinite(diff) and diff <= bound:
        return ProbeVerdict("ok", "")
    then = "stopping the run (sync.probe_action: stop)" if action == "stop" else "the run goes on (sync.probe_action: warn)"
    return ProbeVerdict(action, (
        f"weight-sync probe: {engine} and the learner differ by {diff:.2e} in logprob on the probe prompt, "
        f"above the bound {bound:.1e} (sync.probe_bound): {engine} may not serve the learner's weights "
        f"(a stale prefix cache, a tensor not loaded); {then}"))


def should_probe(iteration: int, first: bool, every: int, replaced: bool) -> bool:
    """Whether the probe runs after the sync of `iteration` (1-based).

    Always on this process's first iteration (a fresh or a resumed run: nothing checked
    this process's engines yet) and when a rollout actor was replaced since the last probe
    (its weights came by another path); otherwise on every `every`-th iteration (multiples
    of `every`, so a resumed run keeps the same schedule).
    """
    return first or replaced or iteration % every == 0


# ----------------------------------------------------------------------------- the two ends


def engine_sample(llm, prompt_ids: list[int], max_tokens: int, seed: int) -> tuple[list[int], list[float]]:
    """Engine end: sample `max_tokens` tokens from the probe prompt at temperature 1 and
    return them with their logprobs.

    Generation, not teacher forcing, on purpose: it reads cached prefix KV, so a cache left
    over from old weights shows up as a logprob mismatch with the learner.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=seed, logprobs=0, ignore_eos=True)
    o = llm.generate([TokensPrompt(prompt_token_ids=list(prompt_ids))], params, use_tqdm=False)[0].outputs[0]
    return list(o.token_ids), [lp[t].logprob for lp, t in zip(o.logprobs, o.token_ids)]


def learner_logprobs(policy, prompt_ids: list[int], token_ids: list[int]) -> list[float]:
    """Learner end: teacher-forced log π(token | prompt, earlier tokens) at temperature 1."""
    batch = build_shard([prompt_ids], [token_ids], [[0.0] * len(token_ids)], [0], [0], [""], [""],
                        len(token_ids), policy_version=-1)
    with torch.no_grad():
        return response_logprobs(policy, batch, 1.0)[0].float().cpu().tolist()
