"""The tiny offline models and the toy task they are built for (toy.models, toy.task).
Building is done once by the session fixture; tests here only load and inspect, except the
cheap determinism checks (corpus, tokenizer) and the cache stamp's coverage."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from toy import task
from toy.models import build as tm_lib  # `tiny_models` is the fixture's name
from toy.models.evaluate import labeler_candidate_probs
from toy.models.tokenizer import train_tokenizer
from toy.task import rule_label, rule_score

# ----------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("response", "score", "label"),
    [
        # 2 bright of 2 adjectives: 2·1 − 1 = 1 → label 1 + round(9·2/2) = 10
        ("The river is bright and warm.", 1.0, 10),
        # 0 of 2: −1 → 1
        ("The river is grey and cold.", -1.0, 1),
        # 1 of 2: 0 → 1 + round(4.5) = 6 (halves round up)
        ("The river is bright and cold.", 0.0, 6),
        # 1 of 3: 2/3 − 1 = −1/3 → 1 + round(9·(2/3)/2 = 3) = 4
        ("The river looks sunny, dark and dim.", -1 / 3, 4),
        # 2 of 3: +1/3 → 1 + round(6) = 7
        ("The river looks sunny, dark and golden.", 1 / 3, 7),
        # case and punctuation do not matter: 2 of 2
        ("SUNNY sky, WARM sea!", 1.0, 10),
        # degenerate answers get the worst score, however bright their words
        ("", -1.0, 1),
        ("bright", -1.0, 1),  # one word
        ("Bright river.", -1.0, 1),  # two words < MIN_WORDS
        ("The river is by the road.", -1.0, 1),  # no adjective
    ],
)
def test_rule_score_hand_cases(response, score, label):
    assert rule_score(response) == pytest.approx(score)
    assert rule_label(response) == label


def test_rule_is_about_word_choice_not_length():
    short = "The sea is warm and dark."  # 1 of 2 → 0
    long = "The sea is warm and dark and the sky is golden and grey."  # 2 of 4 → 0
    assert rule_score(short) == rule_score(long) == 0.0


def test_label_map_endpoints_and_monotone():
    assert task.score_to_label(-1.0) == 1
    assert task.score_to_label(1.0) == 10
    grid = [task.score_to_label(-1 + 2 * i / 100) for i in range(101)]
    assert grid == sorted(grid) and set(grid) == set(range(1, 11))
    # direct-RLAIF reward of a label is its score bucket: 1 → −1, 10 → 1
    assert task.label_to_reward(1) == -1.0 and task.label_to_reward(10) == 1.0


# ------------------------------------------------------------------------- corpus


def test_prompts_deterministic_and_splits_disjoint(tmp_path):
    a = task.toy_prompts(50, seed=3)
    assert a == task.toy_prompts(50, seed=3)
    assert a != task.toy_prompts(50, seed=4)
    train = set(task.toy_prompts(1000, 0, "train"))
    held = set(task.toy_prompts(1000, 0, "heldout"))
    assert train and held and not train & held
    # the split is a property of the prompt, not of the sampling seed
    assert set(task.toy_prompts(1000, 7, "heldout")) == held
    path = task.write_toy_prompts_jsonl(tmp_path / "p.jsonl", 7, seed=1, split="heldout")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == task.toy_prompts(7, 1, "heldout")
    with pytest.raises(ValueError, match="split"):
        task.toy_prompts(3, 0, "test")


def test_sft_corpus_starts_low_with_spread():
    pairs = task.sft_pairs(3000, seed=0)
    assert pairs == task.sft_pairs(3000, seed=0)
    scores = [rule_score(r) for _, r in pairs]
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    assert -0.6 <= mean <= -0.3, mean  # 2·SFT_BRIGHT_P − 1 = −0.4 in expectation
    assert std > 0.4, std  # room for RL: plenty of bright and dull samples
    # every response is about the prompt's noun
    assert all(task.prompt_noun(p) in r for p, r in pairs[:200])


def test_tokenizer_is_deterministic_and_matches_the_built_one(tiny_models):
    from transformers import AutoTokenizer

    tok_a = train_tokenizer(0)
    tok_b = train_tokenizer(0)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    saved = AutoTokenizer.from_pretrained(tiny_models["policy"])
    assert saved.get_vocab() == tok_a.get_vocab()
    sample = "Tell me about the sea. The sea is warm and grey."
    assert saved(sample)["input_ids"] == tok_a(sample)["input_ids"]


# ------------------------------------------------------------------ built folders


def test_folders_load_with_plain_auto_classes(tiny_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sizes = {}
    for name in ("policy", "labeler", "reward_backbone"):
        folder = tiny_models[name]
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        cfg = model.config
        assert cfg.model_type == "llama"
        assert cfg.head_dim == 64 and cfg.hidden_size == 64 * cfg.num_attention_heads
        assert not cfg.tie_word_embeddings
        assert cfg.vocab_size == len(tok)
        assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
        ids = tok("Describe the lake.")["input_ids"]
        assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == "Describe the lake."
        sizes[name] = sum(p.numel() for p in model.parameters())
    assert sizes["labeler"] > 2 * sizes["policy"]
    assert sizes["reward_backbone"] == sizes["policy"]
    # one tokenizer for all: identical files in every folder
    for f in ("tokenizer.json", "tokenizer_config.json"):
        texts = {(tiny_models[n] / f).read_text() for n in ("policy", "labeler", "reward_backbone")}
        assert len(texts) == 1, f


def test_build_report_says_the_labeler_agrees_with_the_rule(tiny_models):
    report = json.loads(tiny_models["report"].read_text())
    assert report["labeler_pearson_heldout"] >= 0.8
    # Judged in both orders and averaged, as the labeler actor judges pairs. One order alone
    # carries the tiny labeler's position bias, and its value moves with the CPU's kernels
    # (0.76 on an AVX2-only EPYC, >= 0.8 where the earlier builds ran): the weights are the
    # same whatever the load, not whatever the instruction set.
    assert report["labeler_pairwise_accuracy_debiased_heldout"] >= 0.8
    assert report["labeler_pairwise_accuracy_heldout"] >= 0.7
    assert report["labeler_pearson_on_policy_samples"] >= 0.8
    # the SFT policy starts low-to-middle, with variance, and stops by itself
    assert -0.7 <= report["policy_mean_rule_score"] <= -0.2
    assert report["policy_std_rule_score"] > 0.3
    assert report["policy_eos_rate"] >= 0.95
    assert report["inputs_hash"] == tm_lib.inputs_hash(0)


def test_cache_stamp_covers_every_toy_module_the_build_imports():
    """Every toy module a build loads is hashed into .complete (toy/__init__.py, a docstring,
    aside): a module added to the builder cannot change the weights behind the stamp's back."""
    import subprocess
    import sys

    code = ("import sys, toy.models.build\n"
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('toy.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {Path(f) for f in out.split()}
    hashed = set(tm_lib.builder_sources())
    assert Path(task.__file__) in loaded and len(loaded) >= 6
    assert loaded <= hashed, sorted(map(str, loaded - hashed))


def test_labeler_prefers_bright_responses(tiny_models):
    """Direct and pairwise on hand-picked extremes, through plain HF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif_ray.labeler import (
        build_direct_prompt,
        build_pairwise_prompt,
        direct_candidate_strings,
        expected_score,
        pairwise_candidate_strings,
    )

    tok = AutoTokenizer.from_pretrained(tiny_models["labeler"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["labeler"])
    ctx = "Describe the harbor."
    bright, dull = "The harbor is sunny and golden.", "The harbor is murky and cold."
    probs = labeler_candidate_probs(
        model, tok, [build_direct_prompt(ctx, bright), build_direct_prompt(ctx, dull)],
        direct_candidate_strings())
    s_bright, s_dull = expected_score(probs).tolist()
    assert s_bright > 7.5 and s_dull < 3.5, (s_bright, s_dull)
    p1 = labeler_candidate_probs(
        model, tok, [build_pairwise_prompt(ctx, bright, dull), build_pairwise_prompt(ctx, dull, bright)],
        pairwise_candidate_strings())[:, 0]
    assert p1[0] > 0.5 > p1[1], p1


# ------------------------------------------------------------------------- caching


def test_ensure_is_a_no_op_when_complete(tiny_models):
    t = time.perf_counter()
    again = tm_lib.ensure_tiny_models(tiny_models["root"], seed=0)
    assert time.perf_counter() - t < 5.0
    assert again == tiny_models


def test_ensure_rebuilds_stale_folders_once_under_a_lock(tmp_path, monkeypatch):
    """A stale folder is replaced; concurrent callers build once. The build is faked."""
    tm = tm_lib
    calls = []

    def fake_build(out_dir, seed=0, *, quiet=False):
        calls.append(Path(out_dir))
        time.sleep(0.2)  # widen the race window for the second thread
        (Path(out_dir) / "policy").mkdir()
        (Path(out_dir) / tm.COMPLETE_FILE).write_text(tm.inputs_hash(seed) + "\n")

    monkeypatch.setattr(tm, "build_tiny_models", fake_build)
    out = tmp_path / "models"
    out.mkdir()
    (out / "junk").write_text("stale")
    (out / tm.COMPLETE_FILE).write_text("some-other-hash\n")

    results = []
    threads = [threading.Thread(target=lambda: results.append(tm.ensure_tiny_models(out)))
               for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(calls) == 1 and calls[0] != out  # built in a temp dir beside it
    assert len(results) == 2 and results[0] == results[1]
    assert (out / "policy").is_dir() and not (out / "junk").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "models.lock"]


def test_cli_reports_the_cached_build(tiny_models, capsys):
    rc = tm_lib.main_make_tiny_models([str(tiny_models["root"]), "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == str(tiny_models["policy"])
    assert out["labeler_pearson_heldout"] >= 0.8


# ---------------------------------------------------------------- not the product


def test_the_library_never_imports_the_toy_world():
    """rlaif_ray, actors and jobs import nothing from toy/ at module level; only the CLI's toy
    verbs (make-tiny-models, make-toy-pairs) load it, inside the function that runs the verb."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    found = []
    for package in ("rlaif_ray", "actors", "jobs"):
        for path in sorted((repo / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "toy" or n.startswith("toy.") for n in names):
                    found.append(f"{path.relative_to(repo)}:{node.lineno}")
    cli_verbs = {"rlaif_ray/cli.py"}
    assert {f.split(":")[0] for f in found} <= cli_verbs, found
    cli = ast.parse((repo / "rlaif_ray/cli.py").read_text())
    top_level = [n for n in cli.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not [n for n in top_level if (getattr(n, "module", None) or "").startswith("toy")]
