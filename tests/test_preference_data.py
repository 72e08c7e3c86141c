"""Preference-pair loaders (generic, summarize-from-feedback, HH-RLHF), TL;DR prompts, label
statistics and toy pairs — all from small local files, no hub, no engines."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlaif_ray.config import LabelSection
from rlaif_ray.data import DataError
from rlaif_ray.preference_data import (
    label_stats, load_pairs, pairs_from_hh_rlhf, position_consistency, read_records, split_hh_dialogue,
    tldr_prompt, write_tldr_prompts_jsonl,
)
from toy.pairs import make_toy_pairs, write_toy_pairs_jsonl
from toy.task import rule_score


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GENERIC = [{"q": "Tell me about the sea.", "good": "The sea is sunny.", "bad": "The sea is grey.", "pick": 0},
           {"q": "Describe the city.", "good": "A dim city.", "bad": "A warm city.", "pick": 1},
           {"q": "Say something.", "good": "x", "bad": "y", "pick": None}]


def _generic(source, **kw):
    return LabelSection(source=str(source), context_column="q", response_a_column="good",
                        response_b_column="bad", human_choice_column="pick", **kw)


# --------------------------------------------------------------------------- generic


def test_generic_jsonl_and_parquet_give_the_same_pairs(tmp_path):
    from_jsonl = load_pairs(_generic(_jsonl(tmp_path / "p.jsonl", GENERIC)))
    pq.write_table(pa.Table.from_pylist(GENERIC), tmp_path / "p.parquet")
    from_parquet = load_pairs(_generic(tmp_path / "p.parquet"))
    assert from_jsonl == from_parquet
    assert from_jsonl[0] == {"context": "Tell me about the sea.", "response_a": "The sea is sunny.",
                             "response_b": "The sea is grey.", "human_choice": 0}
    assert [p["human_choice"] for p in from_jsonl] == [0, 1, None]


def test_generic_parquet_directory_and_max_pairs(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(GENERIC[:2]), d / "a.parquet")
    pq.write_table(pa.Table.from_pylist(GENERIC[2:]), d / "b.parquet")
    assert len(load_pairs(_generic(d))) == 3
    assert [p["context"] for p in load_pairs(_generic(d, max_pairs=2))] == [GENERIC[0]["q"], GENERIC[1]["q"]]


def test_generic_without_human_column_has_no_choices(tmp_path):
    rows = [{"context": "c", "response_a": "a", "response_b": "b"}]
    pairs = load_pairs(LabelSection(source=str(_jsonl(tmp_path / "p.jsonl", rows))))
    assert pairs == [{"context": "c", "response_a": "a", "response_b": "b", "human_choice": None}]


def test_generic_booleans_count_as_choices(tmp_path):
    rows = [dict(GENERIC[0], pick=True), dict(GENERIC[0], pick=False), dict(GENERIC[0], pick=1.0)]
    assert [p["human_choice"] for p in load_pairs(_generic(_jsonl(tmp_path / "p.jsonl", rows)))] == [1, 0, 1]


def test_generic_missing_column_names_field_record_and_columns(tmp_path):
    rows = [GENERIC[0], {"q": "c", "good": "a"}]
    with pytest.raises(DataError, match=r"label.response_b_column: .* record 1 has no column 'bad' \(columns: q, good\)"):
        load_pairs(_generic(_jsonl(tmp_path / "p.jsonl", rows)))


def test_generic_missing_human_column(tmp_path):
    rows = [{"q": "c", "good": "a", "bad": "b"}]
    with pytest.raises(DataError, match=r"label.human_choice_column: .* record 0 has no column 'pick'"):
        load_pairs(_generic(_jsonl(tmp_path / "p.jsonl", rows)))


@pytest.mark.parametrize("bad", [2, -1, 0.5, "A", "1"])
def test_generic_bad_choice_names_the_record(tmp_path, bad):
    rows = [GENERIC[0], dict(GENERIC[0], pick=bad)]
    with pytest.raises(DataError, match=r"label.human_choice_column: .* record 1: human choice must be 0 \(A\), 1 \(B\)"):
        load_pairs(_generic(_jsonl(tmp_path / "p.jsonl", rows)))


def test_generic_non_text_response(tmp_path):
    rows = [dict(GENERIC[0], good=None)]
    with pytest.raises(DataError, match=r"record 0: column 'good' must be text, got NoneType"):
        load_pairs(_generic(_jsonl(tmp_path / "p.jsonl", rows)))


def test_bad_json_line_and_non_object(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GENERIC[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"label.source: .*bad.jsonl line 2: malformed JSON"):
        read_records(str(bad))
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([GENERIC[0], [1, 2]]))
    with pytest.raises(DataError, match=r"arr.json record 1: expected a JSON object, got list"):
        read_records(str(arr))


def test_source_errors(tmp_path):
    with pytest.raises(DataError, match=r"label.source: .*nope.jsonl: no such file"):
        load_pairs(LabelSection(source=str(tmp_path / "nope.jsonl")))
    (tmp_path / "p.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"expected a .jsonl, .json or .parquet"):
        load_pairs(LabelSection(source=str(tmp_path / "p.csv")))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match=r"label.source: .*empty.jsonl is empty"):
        load_pairs(LabelSection(source=str(tmp_path / "empty.jsonl")))


# --------------------------------------------------------------------------- summarize from feedback


SFF = [
    {"info": {"id": "t3_1", "post": "My cat sleeps all day.\n", "title": "Cat question", "subreddit": "cats"},
     "summaries": [{"text": " Cat sleeps a lot.", "policy": "sup2"}, {"text": " Dog barks.", "policy": "ref"}],
     "choice": 0, "worker": "w1"},
    {"info": {"id": "a1", "article": "Rain fell in the city.", "site": "cnn"},
     "summaries": [{"text": "Sun."}, {"text": "It rained."}], "choice": 1},
]


def test_summarize_from_feedback_jsonl(tmp_path):
    pairs = load_pairs(LabelSection(source=str(_jsonl(tmp_path / "c.jsonl", SFF)), format="summarize_from_feedback"))
    assert pairs[0] == {"context": "SUBREDDIT: r/cats\nTITLE: Cat question\nPOST: My cat sleeps all day.",
                        "response_a": "Cat sleeps a lot.", "response_b": "Dog barks.", "human_choice": 0}
    # CNN/DM comparisons carry an article, no title/subreddit.
    assert pairs[1] == {"context": "POST: Rain fell in the city.", "response_a": "Sun.",
                        "response_b": "It rained.", "human_choice": 1}


def test_summarize_from_feedback_parquet_nested_and_struct_of_lists(tmp_path):
    pq.write_table(pa.Table.from_pylist(SFF[:1]), tmp_path / "c.parquet")
    cfg = LabelSection(source=str(tmp_path / "c.parquet"), format="summarize_from_feedback")
    assert load_pairs(cfg)[0]["response_b"] == "Dog barks."
    # HF `datasets` can return a list of structs as a struct of lists.
    rows = [dict(SFF[0], summaries={"text": [" one", " two"], "policy": ["p", "q"]})]
    cfg = LabelSection(source=str(_jsonl(tmp_path / "s.jsonl", rows)), format="summarize_from_feedback")
    assert [load_pairs(cfg)[0][k] for k in ("response_a", "response_b")] == ["one", "two"]


@pytest.mark.parametrize("row, message", [
    ({"summaries": SFF[0]["summaries"], "choice": 0}, r"record 1 has no 'info' object"),
    ({"info": {"title": "t"}, "summaries": SFF[0]["summaries"], "choice": 0}, r"record 1: info has no text 'post' or 'article'"),
    (dict(SFF[0], summaries=[{"text": "only one"}]), r"record 1: 'summaries' must hold exactly two texts"),
    (dict(SFF[0], summaries="a and b"), r"record 1: 'summaries' must be a list"),
    (dict(SFF[0], choice=3), r"record 1: human choice must be 0"),
])
def test_summarize_from_feedback_errors(tmp_path, row, message):
    cfg = LabelSection(source=str(_jsonl(tmp_path / "c.jsonl", [SFF[0], row])), format="summarize_from_feedback")
    with pytest.raises(DataError, match="label.source: .*" + message):
        load_pairs(cfg)


# --------------------------------------------------------------------------- HH-RLHF


def _hh(last_chosen, last_rejected, prefix="\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How do I bake bread?"):
    return {"chosen": f"{prefix}\n\nAssistant: {last_chosen}", "rejected": f"{prefix}\n\nAssistant: {last_rejected}"}


def test_hh_split_shared_prefix_and_last_turn():
    row = _hh("Mix flour, water and yeast.", "Mix it.")  # responses share the prefix "Mix "
    context, chosen, rejected = split_hh_dialogue(row["chosen"], row["rejected"])
    assert context == "Human: Hi\n\nAssistant: Hello!\n\nHuman: How do I bake bread?"
    assert (chosen, rejected) == ("Mix flour, water and yeast.", "Mix it.")


def test_hh_responses_diverging_earlier_keep_their_later_turns():
    chosen = "\n\nHuman: Q\n\nAssistant: A1\n\nHuman: Q2\n\nAssistant: A2"
    rejected = "\n\nHuman: Q\n\nAssistant: B1"
    assert split_hh_dialogue(chosen, rejected) == ("Human: Q", "A1\n\nHuman: Q2\n\nAssistant: A2", "B1")


def test_hh_chosen_placed_by_seeded_coin(tmp_path):
    rows = [_hh(f"good {i}", f"bad {i}") for i in range(40)]
    cfg = LabelSection(source=str(_jsonl(tmp_path / "hh.jsonl", rows)), format="hh_rlhf", seed=7)
    pairs = load_pairs(cfg)
    for i, p in enumerate(pairs):
        chosen = (p["response_a"], p["response_b"])[p["human_choice"]]
        assert chosen == f"good {i}" and "bad" in (p["response_a"], p["response_b"])[1 - p["human_choice"]]
    placements = [p["human_choice"] for p in pairs]
    assert 0 < sum(placements) < 40  # both positions used
    assert placements == [p["human_choice"] for p in load_pairs(cfg)]  # same seed, same coins
    assert placements != [p["human_choice"] for p in pairs_from_hh_rlhf(rows, seed=8)]


def test_hh_errors(tmp_path):
    rows = [_hh("a", "b"), {"chosen": "\n\nHuman: x\n\nAssistant: y"}]
    with pytest.raises(DataError, match=r"label.source: .* record 1 has no column 'rejected'"):
        load_pairs(LabelSection(source=str(_jsonl(tmp_path / "hh.jsonl", rows)), format="hh_rlhf"))
    rows = [{"chosen": "Human: a\n\nAssistant: b", "rejected": "Human: c\n\nAssistant: d"}]
    with pytest.raises(DataError, match=r"record 0: 'chosen' and 'rejected' share no '\\n\\nAssistant:' turn"):
        load_pairs(LabelSection(source=str(_jsonl(tmp_path / "hh2.jsonl", rows)), format="hh_rlhf"))


# --------------------------------------------------------------------------- TL;DR prompts


def test_tldr_prompt_top_level_or_info():
    rec = {"subreddit": "cats", "title": "Help", "post": " My cat... ", "summary": "x"}
    assert tldr_prompt(rec) == "SUBREDDIT: r/cats\nTITLE: Help\nPOST: My cat...\nTL;DR:"
    assert tldr_prompt({"info": rec}) == tldr_prompt(rec)
    assert tldr_prompt({"post": "p"}) == "POST: p\nTL;DR:"
    with pytest.raises(DataError, match=r"record 3: a TL;DR record needs a text 'post' \(keys: title\)"):
        tldr_prompt({"title": "t"}, "record 3")


def test_write_tldr_prompts_feeds_the_prompt_loader(tmp_path):
    from rlaif_ray.data import load_prompts

    src = _jsonl(tmp_path / "tldr.jsonl", [{"subreddit": "a", "title": "t", "post": f"post {i}"} for i in range(3)])
    out = write_tldr_prompts_jsonl(str(src), tmp_path / "prompts.jsonl", max_prompts=2)
    texts = load_prompts(str(out), "prompt")
    assert texts == ["SUBREDDIT: r/a\nTITLE: t\nPOST: post 0\nTL;DR:", "SUBREDDIT: r/a\nTITLE: t\nPOST: post 1\nTL;DR:"]


# --------------------------------------------------------------------------- statistics


def test_position_consistency_hand_values():
    # pair 0: AB says A (0.9 > .5), BA says A (0.2 < .5)       -> consistent
    # pair 1: AB says A (0.7), BA says B (0.6 > .5: B shown first wins) -> inconsistent (position bias)
    # pair 2: AB says B (0.3), BA says B (0.8)                  -> consistent
    # pair 3: AB is a tie (0.5)                                 -> no winner, inconsistent
    assert position_consistency([0.9, 0.7, 0.3, 0.5], [0.2, 0.6, 0.8, 0.1]) == pytest.approx(2 / 4)
    with pytest.raises(ValueError):
        position_consistency([0.5], [])


def test_label_stats_hand_values():
    p_ab, p_ba = [0.9, 0.7, 0.3, 0.5], [0.2, 0.6, 0.8, 0.1]
    p_a = [(x + 1 - y) / 2 for x, y in zip(p_ab, p_ba)]  # 0.85, 0.55, 0.25, 0.7
    s = label_stats(p_a, p_ab, p_ba, [0, 1, 1, None])
    # alignment over the 3 human-labeled pairs: 0.85→A=0 ✓, 0.55→A≠1 ✗, 0.25→B=1 ✓ → 2/3
    assert s == pytest.approx({"n_pairs": 4, "mean_p_a": 2.35 / 4, "position_consistency": 0.5, "n_human": 3,
                               "labeler_alignment": 2 / 3})
    assert label_stats(p_a, p_ab, p_ba, [None] * 4)["labeler_alignment"] is None


# --------------------------------------------------------------------------- toy pairs


def test_toy_pairs_are_seeded_untied_and_labeled_by_the_rule(tmp_path):
    pairs = make_toy_pairs(64, seed=3)
    assert pairs == make_toy_pairs(64, seed=3) and pairs != make_toy_pairs(64, seed=4)
    assert make_toy_pairs(10, seed=3) == pairs[:10]
    for p in pairs:
        sa, sb = rule_score(p["response_a"]), rule_score(p["response_b"])
        assert sa != sb and p["human_choice"] == (0 if sa > sb else 1)
        assert (p["score_a"], p["score_b"]) == (sa, sb)
    assert 10 < sum(p["human_choice"] for p in pairs) < 54  # the winner is on both sides
    held = make_toy_pairs(8, seed=3, split="heldout")
    assert not {p["context"] for p in held} & {p["context"] for p in make_toy_pairs(400, seed=3)}
    path = write_toy_pairs_jsonl(tmp_path / "toy.jsonl", 5, seed=1)
    loaded = load_pairs(LabelSection(source=str(path), human_choice_column="human_choice"))
    assert loaded == [{k: p[k] for k in ("context", "response_a", "response_b", "human_choice")}
                      for p in make_toy_pairs(5, seed=1)]
