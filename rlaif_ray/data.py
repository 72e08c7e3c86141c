"""Prompt datasets: load, format, truncate or drop, and stream in a seeded order.

Sources: a local .jsonl/.json/.parquet file or directory of Parquet (read here, so bad input
is one error naming its line), or an HF dataset name (read with `datasets`; needs a hub). A
prompt is text or a list of chat messages ({role, content}); `rlaif_ray.prompts.PromptFormatter`
turns it into the policy's token ids. The stream's
position is a plain integer, saved in checkpoints, so a resumed run continues with exactly
the next prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlaif_ray.errors import DataError
from rlaif_ray.prompts import (PromptFormatError, PromptFormatter, PromptRecord, display_text, formatter_for,
                               validate_record)


def load_prompts(source: str, column: str, split: str = "train", field: str = "data.source",
                 column_field: str = "data.prompt_column") -> list[PromptRecord]:
    """The prompt records of `column`: texts, or message lists; empty (null) rows are skipped,
    anything else that is not a prompt is an error naming the record. Errors name `field`
    (where `source` came from) and `column_field` (where `column` came from).

    Local files are read here, not through `datasets`, so that bad input (a cut-short JSON
    line, an empty file, a file that is not Parquet, a non-text prompt) is one `DataError`
    naming the file and the line or record, raised before any actor starts and without
    writing a cache; `datasets` reads only hub datasets.
    """
    path = Path(source)
    if path.exists():
        columns, values = _read_local(path, column, field)
    elif "/" in source and not source.startswith((".", "/")):
        columns, values = _read_hub(source, column, split, field)
    else:
        raise DataError(f"{field}: {source}: no such file or directory")
    if column not in columns:
        raise DataError(f"{column_field}: {source} has no column {column!r} (columns: {', '.join(columns)})")
    records = []
    for where, value in values:
        if value is None:
            continue
        try:
            records.append(validate_record(value, f"{field}: {where} ({column})"))
        except PromptFormatError as err:
            raise DataError(str(err)) from None
    if not records:
        raise DataError(f"{field}: {source} holds no prompts in column {column!r}")
    return records


Located = list[tuple[str, object]]  # (where, value): "FILE line 7" or "FILE record 3", the column's value


def _read_local(path: Path, column: str, field: str) -> tuple[list[str], Located]:
    """(column names, the column's values with their places) of a local file or Parquet folder."""
    columns: dict[str, None] = {}
    values: Located = []
    for where, row in read_local_rows(path, field):
        columns.update(dict.fromkeys(row))
        values.append((where, row.get(column)))
    return list(columns), values


def read_local_rows(path: Path, field: str) -> list[tuple[str, dict]]:
    """(place, row) of every record of a local .jsonl/.json/.parquet file or a folder of
    Parquet files; anything unreadable is a `DataError` naming `field` and the file (and the
    line or record)."""
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataError(f"{field}: {path}: expected a .jsonl, .json or .parquet file or a directory of Parquet")
    elif path.suffix in (".jsonl", ".json", ".parquet"):
        files = [path]
    else:
        raise DataError(f"{field}: {path}: expected a .jsonl, .json or .parquet file or a directory of Parquet")
    rows = []
    for f in files:
        if f.stat().st_size == 0:
            raise DataError(f"{field}: {f} is empty")
        rows += _read_parquet(f, field) if f.suffix == ".parquet" else _read_json(f, field)
    if not rows:
        raise DataError(f"{field}: {path} is empty")
    return rows


def _read_json(path: Path, field: str = "data.source") -> list[tuple[str, dict]]:
    """Rows of JSON Lines, or of a .json array (or single object); a malformed line is named."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise DataError(f"{field}: {path} line {line}: not UTF-8 text") from None
    if path.suffix == ".json" and text.lstrip().startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            if text.lstrip().startswith("["):  # one document: its error position is the place
                raise DataError(f"{field}: {path} line {err.lineno}: malformed JSON ({err.msg})") from None
        else:  # an array of records, or one record
            rows = [(f"{path} record {i}", r) for i, r in enumerate(doc if isinstance(doc, list) else [doc])]
            return [_object(where, r, field) for where, r in rows]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{field}: {path} line {n}: malformed JSON ({err.msg} at column {err.colno})") from None
        rows.append(_object(f"{path} line {n}", r, field))
    return rows


def _object(where: str, row, field: str) -> tuple[str, dict]:
    if not isinstance(row, dict):
        raise DataError(f"{field}: {where}: expected a JSON object, got {type(row).__name__}")
    return where, row


def _read_parquet(path: Path, field: str = "data.source") -> list[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{field}: {path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
    return [(f"{path} record {i}", r) for i, r in enumerate(table.to_pylist())]


def _read_hub(source: str, column: str, split: str, field: str) -> tuple[list[str], Located]:
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as err:  # noqa: BLE001 — any failure of the hub or its files is bad input here
        last = (str(err).strip().splitlines() or [""])[-1]
        raise DataError(f"{field}: {source}: cannot load the dataset ({type(err).__name__}: {last})") from None
    if column not in ds.column_names:
        return list(ds.column_names), []
    return list(ds.column_names), [(f"{source} record {i}", v) for i, v in enumerate(ds[column])]


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
