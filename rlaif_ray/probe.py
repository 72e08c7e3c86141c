"""The weight-sync probe: a fixed prompt both rollout engine 0 and the learner score.

After every sync, engine 0 samples PROBE_NEW_TOKENS tokens from the probe prompt and the
learner scores the same tokens teacher-forced; their max |logprob difference| is the metric
`sync/max_logprob_diff` (≈1e-6 in fp32 when the engine serves exactly the learner's weights).
The prompt is longer than one 128-token KV block on CPU, so it is really held in vLLM's
prefix cache: KV left over from old weights would show up in the difference.
"""

PROBE_TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank. "
PROBE_PROMPT_TOKENS = 136
PROBE_NEW_TOKENS = 8


def probe_prompt(tokenizer) -> list[int]:
    piece = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    ids: list[int] = []
    while len(ids) < PROBE_PROMPT_TOKENS:
        ids += piece
    return ids[:PROBE_PROMPT_TOKENS]
