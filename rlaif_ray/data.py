"""Prompt datasets: load, tokenize, truncate or drop, and stream in a seeded order.

Sources: a local .jsonl/.json/.parquet file or directory (read with `datasets`), or an HF
dataset name (needs a hub). The stream's position is a plain integer, saved in checkpoints,
so a resumed run continues with exactly the next prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A dataset that cannot be used; the message names the source and the field."""


def load_prompt_texts(source: str, column: str, split: str = "train") -> list[str]:
    import datasets

    path = Path(source)
    if path.exists():
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(path.suffix)
        if path.is_dir():
            files, kind = sorted(str(p) for p in path.glob("*.parquet")), "parquet"
        else:
            files = [str(path)]
        if kind is None or not files:
            raise DataError(f"data.source: {source}: expected a .jsonl, .json or .parquet file or a directory of Parquet")
        ds = datasets.load_dataset(kind, data_files=files, split="train")
    elif "/" in source and not source.startswith((".", "/")):
        ds = datasets.load_dataset(source, split=split)
    else:
        raise DataError(f"data.source: {source}: no such file or directory")
    if column not in ds.column_names:
        raise DataError(f"data.prompt_column: {source} has no column {column!r} (columns: {', '.join(ds.column_names)})")
    texts = [str(t) for t in ds[column] if t is not None]
    if not texts:
        raise DataError(f"data.source: {source} holds no prompts in column {column!r}")
    return texts


@dataclass
class Prompt:
    index: int          # position in the stream (global over epochs)
    text: str
    token_ids: list[int]


class PromptStream:
    """An endless, seeded, epoch-wise shuffled stream of tokenized prompts.

    Prompts over `max_tokens` are truncated (keeping the end, nearest the answer) or dropped;
    both are counted. The order depends only on (seed, epoch), so position p is always the
    same prompt.
    """

    def __init__(self, texts: list[str], tokenizer, max_tokens: int, long_prompts: str, seed: int):
        self.seed = seed
        self.position = 0
        self.truncated = 0
        self.dropped = 0
        self.items: list[tuple[str, list[int]]] = []
        for text in texts:
            ids = tokenizer(text, add_special_tokens=True)["input_ids"]
            if len(ids) > max_tokens:
                if long_prompts == "drop":
                    self.dropped += 1
                    continue
                ids = ids[-max_tokens:]
                self.truncated += 1
            self.items.append((text, ids))
        if not self.items:
            raise DataError(f"data.max_prompt_tokens: every prompt is longer than {max_tokens} tokens and was dropped")

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.items))

    def take(self, n: int) -> list[Prompt]:
        out = []
        for _ in range(n):
            epoch, offset = divmod(self.position, len(self.items))
            text, ids = self.items[int(self._order(epoch)[offset])]
            out.append(Prompt(self.position, text, ids))
            self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
