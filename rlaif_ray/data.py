"""Prompt datasets: load, format, truncate or drop, and stream in a seeded order.

Sources: a local .jsonl/.json/.parquet file or directory (read with `datasets`), or an HF
dataset name (needs a hub). A prompt is text or a list of chat messages ({role, content});
`rlaif_ray.prompts.PromptFormatter` turns it into the policy's token ids. The stream's
position is a plain integer, saved in checkpoints, so a resumed run continues with exactly
the next prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlaif_ray.prompts import (PromptFormatError, PromptFormatter, PromptRecord, display_text, formatter_for,
                               validate_record)


class DataError(ValueError):
    """A dataset that cannot be used; the message names the source and the field."""


def load_prompts(source: str, column: str, split: str = "train") -> list[PromptRecord]:
    """The prompt records of `column`: texts, or message lists; empty (null) rows are skipped,
    anything else that is not a prompt is an error naming the record."""
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
    records = []
    for i, value in enumerate(ds[column]):
        if value is None:
            continue
        try:
            records.append(validate_record(value, f"data.source: {source} record {i} ({column})"))
        except PromptFormatError as err:
            raise DataError(str(err)) from None
    if not records:
        raise DataError(f"data.source: {source} holds no prompts in column {column!r}")
    return records


@dataclass
class Prompt:
    index: int          # position in the stream (global over epochs)
    text: str           # what the labeler and a person read (`rlaif_ray.prompts.display_text`)
    token_ids: list[int]  # what the policy reads: formatted (chat template) and within the limit


class PromptStream:
    """An endless, seeded, epoch-wise shuffled stream of formatted prompts.

    Prompts over `max_tokens` are truncated (as `PromptFormatter.encode` does) or dropped;
    both are counted. The order depends only on (seed, epoch), so position p is always the
    same prompt.
    """

    def __init__(self, records: list[PromptRecord], formatter: PromptFormatter, max_tokens: int,
                 long_prompts: str, seed: int):
        self.seed = seed
        self.position = 0
        self.truncated = 0
        self.dropped = 0
        self.items: list[tuple[str, list[int]]] = []
        for k, record in enumerate(records):
            try:
                enc = formatter.encode(record, max_tokens, truncate=long_prompts == "truncate")
            except PromptFormatError as err:
                raise DataError(f"record {k}: {err}") from None
            if enc is None:
                self.dropped += 1
                continue
            self.truncated += enc.truncated
            self.items.append((display_text(record), enc.token_ids))
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


def prompt_stream(data_cfg, tokenizer, model_name: str, seed: int) -> PromptStream:
    """The run's prompt stream from its `data:` section and the policy tokenizer."""
    records = load_prompts(data_cfg.source, data_cfg.prompt_column, data_cfg.split)
    return PromptStream(records, formatter_for(tokenizer, data_cfg, model_name), data_cfg.max_prompt_tokens,
                        data_cfg.long_prompts, seed)
