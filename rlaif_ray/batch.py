"""The batch that moves between actors through the Ray object store.

Arrays are numpy so consumers read them zero-copy from the object store; text is plain
lists. A rollout actor produces one `RolloutBatch` shard; consumers get the shards' ObjectRefs
and concatenate locally, so the driver never holds the data.

Layout: every sample is `prompt + response` right-padded into `input_ids`; per-token
response arrays are aligned to the response (column t is the t-th generated token), so
they index the same way in every role.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

PAD_ID = 0  # padding value of id arrays; padded positions are always masked out


@dataclass
class RolloutBatch:
    input_ids: np.ndarray        # (B, L) int64 prompt + response, right-padded with PAD_ID
    prompt_lens: np.ndarray      # (B,) int64 prompt tokens of each row
    response_lens: np.ndarray    # (B,) int64 response tokens of each row (≥ 0)
    rollout_logp: np.ndarray     # (B, T) float32 log π_rollout(a_t | s_t) from vLLM, 0 on padding
    prompt_index: np.ndarray     # (B,) int64 position of the prompt in the data stream
    sample_index: np.ndarray     # (B,) int64 which of the n samples of its prompt this is
    prompts: list[str]           # (B,) prompt text
    responses: list[str]         # (B,) response text
    versions: np.ndarray         # (B,) int64 the policy version that generated each row
    meta: dict = field(default_factory=dict)  # small per-shard facts (actor name, seconds)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def policy_version(self) -> int:
        """The oldest policy version among the rows (-1 for an empty batch)."""
        return int(self.versions.min()) if len(self.versions) else -1

    @property
    def max_response_len(self) -> int:
        return self.rollout_logp.shape[1]

    def response_mask(self) -> np.ndarray:
        """(B, T) float32, 1 on response tokens."""
        t = np.arange(self.max_response_len)[None, :]
        return (t < self.response_lens[:, None]).astype(np.float32)

    def response_ids(self) -> np.ndarray:
        """(B, T) int64 the generated tokens, PAD_ID after each response."""
        idx = self.prompt_lens[:, None] + np.arange(self.max_response_len)[None, :]
        idx = np.minimum(idx, self.input_ids.shape[1] - 1)
        ids = np.take_along_axis(self.input_ids, idx, axis=1)
        return np.where(self.response_mask() > 0, ids, PAD_ID)

    @staticmethod
    def concat(shards: list["RolloutBatch"]) -> "RolloutBatch":
        """Join shards (in order) into one batch; each row keeps the version that generated it
        (a pipelined batch can mix versions when a replaced engine started from newer weights)."""
        width = max(s.input_ids.shape[1] for s in shards)
        t_max = max(s.max_response_len for s in shards)
        return RolloutBatch(
            input_ids=np.concatenate([_pad_to(s.input_ids, width, PAD_ID) for s in shards]),
            prompt_lens=np.concatenate([s.prompt_lens for s in shards]),
            response_lens=np.concatenate([s.response_lens for s in shards]),
            rollout_logp=np.concatenate([_pad_to(s.rollout_logp, t_max, 0.0) for s in shards]),
            prompt_index=np.concatenate([s.prompt_index for s in shards]),
            sample_index=np.concatenate([s.sample_index for s in shards]),
            prompts=[p for s in shards for p in s.prompts],
            responses=[r for s in shards for r in s.responses],
            versions=np.concatenate([s.versions for s in shards]),
            meta={"shards": [s.meta for s in shards]},
        )

    def select(self, rows: np.ndarray) -> "RolloutBatch":
        """A new batch of the given rows (e.g. a learner's data-parallel slice)."""
        rows = np.asarray(rows)
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                out[f.name] = v[rows]
            elif isinstance(v, list):
                out[f.name] = [v[i] for i in rows]
            else:
                out[f.name] = v
        return RolloutBatch(**out)


def _pad_to(a: np.ndarray, width: int, value) -> np.ndarray:
    if a.shape[1] == width:
        return a
    return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=value)


def build_shard(prompt_ids: list[list[int]], response_ids: list[list[int]], response_logp: list[list[float]],
                prompt_index: list[int], sample_index: list[int], prompts: list[str], responses: list[str],
                max_response_len: int, policy_version: int, meta: dict | None = None) -> RolloutBatch:
    """Pack ragged generation outputs into a `RolloutBatch`."""
    b = len(prompt_ids)
    lens_p = np.array([len(p) for p in prompt_ids], dtype=np.int64)
    lens_r = np.array([len(r) for r in response_ids], dtype=np.int64)
    width = int((lens_p + lens_r).max()) if b else 1
    input_ids = np.full((b, width), PAD_ID, dtype=np.int64)
    logp = np.zeros((b, max_response_len), dtype=np.float32)
    for i, (p, r, lp) in enumerate(zip(prompt_ids, response_ids, response_logp)):
        input_ids[i, : len(p) + len(r)] = list(p) + list(r)
        logp[i, : len(lp)] = lp
    return RolloutBatch(input_ids, lens_p, lens_r, logp, np.asarray(prompt_index, dtype=np.int64),
                        np.asarray(sample_index, dtype=np.int64), list(prompts), list(responses),
                        np.full(b, policy_version, dtype=np.int64), meta or {})


# --------------------------------------------------------------------------- model side


def model_inputs(batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, L), for a causal LM forward."""
    ids = torch.from_numpy(batch.input_ids)
    lens = torch.from_numpy(batch.prompt_lens + batch.response_lens)
    attn = (torch.arange(ids.shape[1])[None, :] < lens[:, None]).long()
    return ids, attn


def response_positions(batch: RolloutBatch) -> torch.Tensor:
    """(B, T) index of the logit row that predicts each response token: prompt_len − 1 + t."""
    t = torch.arange(batch.max_response_len)[None, :]
    pos = torch.from_numpy(batch.prompt_lens)[:, None] - 1 + t
    return pos.clamp(min=0, max=batch.input_ids.shape[1] - 2)


def gather_response(per_position: torch.Tensor, batch: RolloutBatch) -> torch.Tensor:
    """Pick response-aligned values out of a (B, L-1, ...) per-position tensor → (B, T, ...)."""
    pos = response_positions(batch).to(per_position.device)
    if per_position.dim() == 2:
        return per_position.gather(1, pos)
    return per_position.gather(1, pos[..., None].expand(-1, -1, per_position.shape[-1]))
