"""The build report's numbers: how well the labeler agrees with the rule, where the policy starts.

The labeler is scored on held-out toy prompts with the same candidate math the labeler
actor uses (``rlaif_ray.labeler``): Pearson correlation of its expected grade with the
rule's score, and pairwise accuracy in one order and both orders averaged. The SFT policy
is sampled at temperature 1 and scored by the rule and by the labeler.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

from rlaif_ray.labeler import (
    build_direct_prompt,
    build_pairwise_prompt,
    candidate_probs,
    direct_candidate_strings,
    expected_score,
    pairwise_candidate_strings,
    plan_candidate_queries,
    preference_from_swapped,
)
from toy import task

N_EVAL_DIRECT = 300
N_EVAL_PAIRS = 200
N_POLICY_SAMPLES = 256


@torch.no_grad()
def _next_token_logprobs(model, tokenizer, texts_and_prefixes, batch_size=64):
    """log_softmax of the next-token logits after ``<s> text + prefix ids``: (N, V)."""
    out = []
    for i in range(0, len(texts_and_prefixes), batch_size):
        chunk = texts_and_prefixes[i: i + batch_size]
        seqs = [tokenizer(t)["input_ids"] + list(p) for t, p in chunk]
        T = max(map(len, seqs))
        ids = torch.zeros(len(seqs), T, dtype=torch.long)  # (N, T) right-padded with <pad>=0
        attn = torch.zeros(len(seqs), T, dtype=torch.long)  # (N, T) 1 on real tokens
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = torch.tensor(s)
            attn[b, : len(s)] = 1
        hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state
        last = hidden[torch.arange(len(seqs)), attn.sum(1) - 1]
        out.append(torch.log_softmax(model.lm_head(last).float(), dim=-1))
    return torch.cat(out)


def labeler_candidate_probs(model, tokenizer, prompts: Sequence[str],
                            candidates: Sequence[str]) -> torch.Tensor:
    """(N, C) renormalised P(candidate | prompt), candidates scored exactly (chain rule,
    prefix-corrected) with ``rlaif_ray.labeler`` — the same math the labeler actor uses."""
    cand_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in candidates]
    plan = plan_candidate_queries(cand_ids)
    queries = [(p, prefix) for p in prompts for prefix in plan]
    logp = _next_token_logprobs(model, tokenizer, queries)
    rows = []
    for i in range(len(prompts)):
        answers = {prefix: {t: logp[i * len(plan) + j, t].item() for t in plan[prefix]}
                   for j, prefix in enumerate(plan)}
        rows.append(candidate_probs(cand_ids, answers))
    return torch.stack(rows)


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    xt, yt = xt - xt.mean(), yt - yt.mean()
    return float((xt * yt).sum() / (xt.norm() * yt.norm()).clamp(min=1e-12))


def eval_labeler(model, tokenizer, seed: int) -> dict:
    """Held-out agreement with the rule: Pearson(E[score], rule_score) and pairwise accuracy."""
    rng = random.Random(f"toy-labeler-eval/{seed}")
    prompts = task.toy_prompts(N_EVAL_DIRECT, seed + 2000, "heldout")
    responses = [task.labeler_response(p, rng) for p in prompts]
    probs = labeler_candidate_probs(
        model, tokenizer, [build_direct_prompt(p, r) for p, r in zip(prompts, responses)],
        direct_candidate_strings())
    s = expected_score(probs).tolist()
    rule = [task.rule_score(r) for r in responses]

    pairs = []
    for p in task.toy_prompts(N_EVAL_PAIRS, seed + 3000, "heldout"):
        while True:
            a, b = task.labeler_response(p, rng), task.labeler_response(p, rng)
            if task.rule_score(a) != task.rule_score(b):
                break
        pairs.append((p, a, b))
    both = labeler_candidate_probs(
        model, tokenizer,
        [build_pairwise_prompt(p, a, b) for p, a, b in pairs]
        + [build_pairwise_prompt(p, b, a) for p, a, b in pairs],
        pairwise_candidate_strings())[:, 0]
    p_ab, p_ba = both[: len(pairs)], both[len(pairs):]  # P("1") in each order
    a_wins = [task.rule_score(a) > task.rule_score(b) for _, a, b in pairs]

    def accuracy(p_a: torch.Tensor) -> float:
        return round(sum((float(q) > 0.5) == w for q, w in zip(p_a, a_wins)) / len(pairs), 4)

    return {
        "labeler_pearson_heldout": round(_pearson(s, rule), 4),
        # one order (A shown first), and both orders averaged (what the labeler actor does)
        "labeler_pairwise_accuracy_heldout": accuracy(p_ab),
        "labeler_pairwise_accuracy_debiased_heldout": accuracy(
            preference_from_swapped(p_ab, p_ba)),
        "n_eval_direct": len(s),
        "n_eval_pairs": len(pairs),
    }


@torch.no_grad()
def _sample_policy(model, tokenizer, prompts: Sequence[str],
                   seed: int) -> tuple[list[str], list[bool]]:
    """Temperature-1 samples (max 40 new tokens) decoded without special tokens, and
    whether each ended with </s>."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    tokenizer.padding_side = "right"
    gen = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                         max_new_tokens=40, pad_token_id=0, eos_token_id=2)
    new = gen[:, enc["input_ids"].shape[1]:]
    ended = [(row == 2).any().item() for row in new]
    return tokenizer.batch_decode(new, skip_special_tokens=True), ended


def eval_policy(policy, labeler, tokenizer, seed: int) -> dict:
    """What RL starts from: the SFT policy's rule score and the labeler's view of it."""
    prompts = task.toy_prompts(N_POLICY_SAMPLES, seed + 4000, "train")
    responses, ended = _sample_policy(policy, tokenizer, prompts, seed)
    rule = [task.rule_score(r) for r in responses]
    probs = labeler_candidate_probs(
        labeler, tokenizer, [build_direct_prompt(p, r) for p, r in zip(prompts, responses)],
        direct_candidate_strings())
    s = expected_score(probs).tolist()
    mean = sum(rule) / len(rule)
    return {
        "policy_mean_rule_score": round(mean, 4),
        "policy_std_rule_score": round((sum((x - mean) ** 2 for x in rule) / len(rule)) ** 0.5, 4),
        "policy_eos_rate": round(sum(ended) / len(ended), 4),
        "labeler_pearson_on_policy_samples": round(_pearson(s, rule), 4),
        "policy_samples": [p + " ->" + r for p, r in zip(prompts[:5], responses[:5])],
    }
