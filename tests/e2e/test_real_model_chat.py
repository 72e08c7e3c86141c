"""A real instruct model end to end: SmolLM2-135M-Instruct as chat policy and chat AI labeler.

- the chat labeler's direct reward (vLLM, Ray actor) equals a teacher-forced Hugging Face
  computation of Σ i·P(i) on the same tokens, although SmolLM2's tokenizer splits " 10" into
  " ", "1", "0" (so " 1" is a prefix of " 10"); the same for the pairwise P("1");
- a 2-iteration run with it as policy and labeler, chat templates on both: every metric
  finite, the sync probe within its bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import ray
import torch
import yaml

from rlaif_ray.config import apply_overrides, config_from_dict

pytestmark = pytest.mark.slow

FP32_TOL = 1e-4
SAMPLES = [  # (question, answer): a good answer, a wrong one, nonsense, an empty-ish one
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of France?", "The capital of France is Berlin."),
    ("How do I boil an egg?", "Banana purple seven window."),
    ("Why is the sky blue?", "Sunlight is scattered by air molecules, and blue light scatters the most."),
]


@pytest.fixture(scope="module")
def real_config(smollm2, repo_root):
    def make(*overrides: str):
        raw = yaml.safe_load((repo_root / "configs" / "smollm2-cpu.yaml").read_text())
        raw = apply_overrides(raw, [f"model.policy={smollm2}", f"model.labeler={smollm2}",
                                    f"data.source={repo_root / 'configs/data/everyday-questions.jsonl'}", *overrides])
        return config_from_dict(raw)
    return make


@pytest.fixture(scope="module")
def hf(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    return AutoTokenizer.from_pretrained(smollm2), model


def _continuation_logprobs(model, prompt: list[int], continuations: list[list[int]]) -> list[float]:
    """log P(c | prompt) for each continuation c, teacher-forced. The prompt runs once; each
    continuation's tokens after its first run on the prompt's KV cache, which is cut back to
    the prompt after each (a forward extends it in place)."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].double(), -1)
        cache, logprobs = out.past_key_values, []
        for c in continuations:
            total = float(first[c[0]])
            if len(c) > 1:
                rest = model(input_ids=torch.tensor([c[:-1]]), past_key_values=cache, use_cache=True)
                logp = torch.log_softmax(rest.logits[0].double(), -1)
                total += float(sum(logp[k, t] for k, t in enumerate(c[1:])))
                cache.crop(len(prompt))
            logprobs.append(total)
    return logprobs


def _hf_direct_reward(model, prompt_ids: list[int], candidates: list[list[int]]) -> float:
    """Σ i·P(i) from whole-sequence probabilities: the answer is exactly " 1" with probability
    P(" 1") − P(" 10") (" 10" starts with " 1"'s tokens); renormalised over the ten scores."""
    seq = [math.exp(lp) for lp in _continuation_logprobs(model, prompt_ids, candidates)]
    exact = [p - sum(q for d, q in zip(candidates, seq) if len(d) > len(c) and d[: len(c)] == c)
             for c, p in zip(candidates, seq)]
    probs = np.array(exact) / sum(exact)
    s = float(np.dot(np.arange(1, 11), probs))
    return 2 * (s - 1) / 9 - 1


def test_chat_labeler_scores_match_hugging_face(ray_local, real_config, hf):
    from actors.labeler import LabelerActor
    from rlaif_ray.batch import build_shard
    from rlaif_ray.labeler.render import LabelerPrompts, labeler_context_tokens

    cfg = real_config()
    tok, model = hf
    prompts = LabelerPrompts(cfg.labeler, tok, "smollm2")
    candidates = [prompts.encode_candidate(c) for c in prompts.candidates("direct")]
    # SmolLM2 splits numbers into digits and the leading space into its own token.
    assert candidates[0] == [216, 33] and candidates[9] == [216, 33, 32]

    context = labeler_context_tokens(cfg.labeler, cfg.data.max_prompt_tokens + cfg.rollout.sampling.max_new_tokens)
    labeler = ray.remote(LabelerActor).options(num_cpus=1).remote(cfg, 0, context)
    n = len(SAMPLES)
    shard = build_shard([[1]] * n, [[1]] * n, [[0.0]] * n, list(range(n)), [0] * n, [q for q, _ in SAMPLES],
                        [a for _, a in SAMPLES], max_response_len=1, policy_version=0)
    rewards_ref, _ = labeler.direct_rewards.remote([ray.put(shard)])
    got = ray.get(rewards_ref)
    want = [_hf_direct_reward(model, prompts.encode(prompts.prompt(q, a, kind="direct")), candidates)
            for q, a in SAMPLES]
    print(f"chat labeler direct rewards {np.round(got, 4).tolist()}; max |vLLM − HF| = "
          f"{np.max(np.abs(np.asarray(got) - np.asarray(want))):.2e}")
    np.testing.assert_allclose(got, want, atol=FP32_TOL, rtol=0)

    (q, good), (_, bad) = SAMPLES[0], SAMPLES[1]
    prefs = ray.get(labeler.pairwise_preferences.remote([q], [good], [bad]))
    ids = prompts.encode(prompts.prompt(q, good, bad, kind="pairwise"))
    one, two = _continuation_logprobs(model, ids, [prompts.encode_candidate(c) for c in prompts.candidates("pairwise")])
    assert prefs["p_ab"][0] == pytest.approx(1 / (1 + math.exp(two - one)), abs=FP32_TOL)
    ray.kill(labeler)


def test_two_iterations_with_chat_policy_and_chat_labeler(ray_local, real_config, tmp_path):
    from rlaif_ray.driver.run import train_run
    from rlaif_ray.run_dir import read_metrics

    # 2 prompts × 4 samples: one optimiser step per iteration (the real model's path, at half the example's work).
    cfg = real_config("run.iterations=2", "rollout.sampling.max_new_tokens=32", "data.prompts_per_iteration=2")
    summary = train_run(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run")
    assert summary["iterations"] == 2 and len(rows) == 2
    for row in rows:
        bad = {k: v for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, f"non-finite metrics: {bad}"
        assert row["data/samples"] == 8 and row["data/truncated_prompts"] == 0
        assert -1.0 <= row["reward/labeler_direct/mean"] <= 1.0
    assert len((tmp_path / "run" / "prompts.jsonl").read_text().splitlines()) == 2
    assert max(r["sync/max_logprob_diff"] for r in rows if "sync/max_logprob_diff" in r) <= cfg.sync.probe_bound_for(cfg.model.dtype)
