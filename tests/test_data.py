"""Prompt sources (local jsonl/parquet) and the seeded, resumable PromptStream."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlaif_ray.data import DataError, PromptStream, load_prompts
from rlaif_ray.prompts import PromptFormatter


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    # Keep `datasets`' Arrow cache inside the test's tmp dir, not ~/.cache.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def fake_tokenizer(text, add_special_tokens=True):
    """One token per word; ids are the word positions, so truncation is visible."""
    return {"input_ids": list(range(len(text.split())))}


FMT = PromptFormatter(fake_tokenizer, chat_template=False, system_prompt=None, model_name="fake")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- sources


def test_jsonl_source(tmp_path):
    src = _jsonl(tmp_path / "p.jsonl", [{"prompt": "a b", "id": 1}, {"prompt": "c", "id": 2},
                                       {"prompt": None, "id": 3}])
    assert load_prompts(str(src), "prompt") == ["a b", "c"]  # None rows are skipped


def test_parquet_file_and_directory(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    pq.write_table(pa.table({"text": ["x y", "z"]}), d / "part-0.parquet")
    pq.write_table(pa.table({"text": ["w"]}), d / "part-1.parquet")
    assert load_prompts(str(d / "part-0.parquet"), "text") == ["x y", "z"]
    assert load_prompts(str(d), "text") == ["x y", "z", "w"]  # shards in name order


def test_missing_column_names_the_field_and_lists_columns(tmp_path):
    src = _jsonl(tmp_path / "p.jsonl", [{"question": "a", "id": 1}])
    with pytest.raises(DataError) as err:
        load_prompts(str(src), "prompt")
    msg = str(err.value)
    assert msg.startswith("data.prompt_column: ")
    assert "no column 'prompt'" in msg and "(columns: question, id)" in msg


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"^data.source: .*nope.jsonl: no such file or directory"):
        load_prompts(str(tmp_path / "nope.jsonl"), "prompt")


def test_unsupported_file_and_empty_directory(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("hello\n")
    with pytest.raises(DataError, match=r"^data.source: .*expected a .jsonl, .json or .parquet"):
        load_prompts(str(txt), "prompt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^data.source: .*expected"):
        load_prompts(str(tmp_path / "empty"), "prompt")


def test_source_without_prompts(tmp_path):
    src = _jsonl(tmp_path / "p.jsonl", [{"prompt": None}])
    with pytest.raises(DataError, match="holds no prompts in column 'prompt'"):
        load_prompts(str(src), "prompt")


@pytest.mark.parametrize("name, content, says", [
    ("p.jsonl", b'{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n', r"p.jsonl line 2: malformed JSON \(Expecting"),
    ("p.jsonl", b"", r"p.jsonl is empty"),
    ("p.jsonl", b"\n  \n", r"p.jsonl is empty"),
    ("p.jsonl", b'{"prompt": "a"}\n[1, 2]\n', r"p.jsonl line 2: expected a JSON object, got list"),
    ("p.jsonl", b'{"prompt": "a"}\n{"prompt": "\xff"}\n', r"p.jsonl line 2: not UTF-8 text"),
    ("p.json", b'[{"prompt": "a"},\n {"prompt": }]', r"p.json line 2: malformed JSON"),
    ("p.json", b'[{"prompt": "a"}, "b"]', r"p.json record 1: expected a JSON object, got str"),
    ("p.parquet", b"PAR1 but not really", r"p.parquet: not a readable Parquet file"),
    ("p.parquet", b"", r"p.parquet is empty"),
])
def test_bad_file_is_one_error_naming_the_place(tmp_path, name, content, says):
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(DataError, match=rf"^data.source: .*{says}"):
        load_prompts(str(src), "prompt")


def test_json_array_and_json_lines_in_a_json_file(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"prompt": "x"}, {"prompt": "y"}]))
    lines = _jsonl(tmp_path / "l.json", [{"prompt": "x"}, {"prompt": "y"}])
    assert load_prompts(str(arr), "prompt") == load_prompts(str(lines), "prompt") == ["x", "y"]


# --------------------------------------------------------------------------- stream


TEXTS = [f"prompt {i}" for i in range(7)]  # 2 tokens each


def test_truncation_keeps_the_end_and_is_counted():
    s = PromptStream(["a b c d e", "f g", "h i j"], FMT, max_tokens=3, long_prompts="truncate", seed=0)
    assert (s.truncated, s.dropped) == (1, 0)
    ids = {p.text: p.token_ids for p in s.take(3)}
    assert ids == {"a b c d e": [2, 3, 4], "f g": [0, 1], "h i j": [0, 1, 2]}  # 5 tokens → last 3


def test_dropping_is_counted():
    s = PromptStream(["a b c d e", "f g", "h i j k"], FMT, max_tokens=3, long_prompts="drop", seed=0)
    assert (s.truncated, s.dropped) == (0, 2)
    assert {p.text for p in s.take(4)} == {"f g"}
    with pytest.raises(DataError, match=r"^data.max_prompt_tokens: every prompt is longer than 1"):
        PromptStream(["a b", "c d"], FMT, max_tokens=1, long_prompts="drop", seed=0)


def test_every_prompt_once_per_epoch():
    s = PromptStream(TEXTS, FMT, max_tokens=8, long_prompts="truncate", seed=3)
    taken = s.take(3 * len(TEXTS))
    assert [p.index for p in taken] == list(range(21))  # indices are global stream positions
    epochs = [[p.text for p in taken[e * 7:(e + 1) * 7]] for e in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == sorted(TEXTS)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # reshuffled per epoch


def test_order_is_reproducible_from_the_seed():
    def order(seed):
        return [p.text for p in PromptStream(TEXTS, FMT, 8, "truncate", seed).take(14)]

    assert order(0) == order(0)
    assert order(0) != order(1)
    # Taking in pieces gives the same sequence as taking at once.
    s = PromptStream(TEXTS, FMT, 8, "truncate", seed=0)
    assert [p.text for n in (3, 5, 6) for p in s.take(n)] == order(0)


def test_state_dict_resumes_exactly():
    one = PromptStream(TEXTS, FMT, 8, "truncate", seed=5)
    want = [(p.index, p.text) for p in one.take(10)]

    first = PromptStream(TEXTS, FMT, 8, "truncate", seed=5)
    got = [(p.index, p.text) for p in first.take(5)]
    state = json.loads(json.dumps(first.state_dict()))  # checkpoints store it as JSON
    assert state == {"position": 5, "seed": 5}
    second = PromptStream(TEXTS, FMT, 8, "truncate", seed=5)
    second.load_state_dict(state)
    got += [(p.index, p.text) for p in second.take(5)]
    assert got == want  # crosses the epoch boundary at position 7


# --------------------------------------------------------------------------- chat records


def test_chat_message_column(tmp_path):
    convo = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    src = _jsonl(tmp_path / "chat.jsonl", [{"messages": convo}, {"messages": [{"role": "user", "content": "yo"}]}])
    assert load_prompts(str(src), "messages") == [convo, [{"role": "user", "content": "yo"}]]


@pytest.mark.parametrize("prompt, line, got", [(42, 3, "int"), ({"text": "hi"}, 5, "dict")])
def test_prompt_of_the_wrong_type_is_named_by_line(tmp_path, prompt, line, got):
    rows = [{"prompt": f"fine {i}"} for i in range(line - 1)] + [{"prompt": prompt}, {"prompt": "after"}]
    src = _jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(DataError, match=rf"^data.source: .*p.jsonl line {line} \(prompt\): a prompt must be text "
                                        rf"or a list of \{{role, content\}} messages, got {got}$"):
        load_prompts(str(src), "prompt")


def test_bad_record_is_named(tmp_path):
    src = _jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]},
                                          {"messages": [{"role": "system", "content": "only"}]}])
    # JSON Lines name the line (1-based), what an editor shows; Parquet and JSON arrays the record.
    with pytest.raises(DataError, match=r"chat.jsonl line 2 \(messages\): a chat prompt needs at least one user"):
        load_prompts(str(src), "messages")
