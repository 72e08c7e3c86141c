"""How benchmark figures are taken (bench/common.py): the quietness judgement, the A B A B
order, median / spread / ratio, and `--strict` refusing a result from a loaded machine.
Hand values throughout; no benchmark is run."""

from __future__ import annotations

import sys
import types

import pytest

from bench import runner
from bench.common import Result, Rounds, alternation_order, judge_quiet, markdown, ratio_of_medians, spread

MACHINE = {"nproc": 2, "cpu": "AMD EPYC", "ram_gib": 23.5}


# --------------------------------------------------------------------------- quietness


@pytest.mark.parametrize("before, after, quiet", [
    (0.8, 1.2, True),    # started ≤ 1, moved 0.4
    (1.0, 1.5, True),    # both bounds are allowed
    (1.1, 1.1, False),   # started above 1 (issue 13's rollout run, load 1.1 before)
    (0.2, 0.8, False),   # moved 0.6 up
    (0.9, 0.3, False),   # moved 0.6 down: work left during the run
    (9.5, 10.0, False),  # the old TRL figure's load
])
def test_quiet_judgement(before, after, quiet):
    q = judge_quiet([before, 0.0, 0.0], [after, 0.0, 0.0])
    assert q.quiet is quiet and (q.reason == "") is quiet


def test_not_quiet_reason_names_both_causes():
    q = judge_quiet([1.6, 1.0, 1.0], [2.4, 1.0, 1.0])
    assert q.reason == "load 1.60 at the start (> 1); load moved 1.60 → 2.40 (by more than 0.5)"


def test_markdown_flags_a_result_not_quiet():
    r = Result("x", False, {}, [{"a": 1.0}], [("a", "A")])
    loud = markdown(r, MACHINE, [1.6, 0, 0], [1.7, 0, 0]).splitlines()
    assert loud[2].startswith("2 × AMD EPYC")  # the machine heads the result
    assert any(line.startswith("**Warning: not quiet** (load 1.60 at the start") for line in loud)
    assert "not quiet" not in markdown(r, MACHINE, [0.5, 0, 0], [0.7, 0, 0])


# --------------------------------------------------------------------------- alternation


def test_alternation_order():
    assert alternation_order("ours", "hf", 3) == ["ours", "hf", "ours", "hf", "ours", "hf"]
    assert alternation_order("a", "b", 0) == []


def test_spread_and_ratio_by_hand():
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([4.0, 1.0, 2.0, 3.0])["median"] == 2.5       # (2 + 3) / 2
    # issue 13's TRL rounds: ours 13.6..16.3, TRL 7.7..9.2; medians 15.9 and 7.84 -> 2.03×
    assert ratio_of_medians([13.6, 15.9, 16.3], [7.7, 7.84, 9.2]) == pytest.approx(15.9 / 7.84)


def test_rounds_runs_in_turn_and_drops_the_warmup():
    calls = []
    values = {"a": iter([100.0, 4.0, 6.0, 5.0]), "b": iter([100.0, 2.0, 1.0, 3.0])}

    def contender(name):
        def call():
            calls.append(name)
            return next(values[name]), {"round": len(calls)}
        return call

    r = Rounds("a", "b", rounds=3, warmup=1).run({"a": contender("a"), "b": contender("b")})
    assert calls == ["a", "b"] * 4 and r.done
    st = r.stats()
    # measured a: 4, 6, 5 -> median 5, 4..6; b: 2, 1, 3 -> median 2, 1..3; ratio 5 / 2
    assert st["a"] == {"median": 5.0, "min": 4.0, "max": 6.0, "n": 3}
    assert st["b"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert st["ratio"] == 2.5 and r.stats(ratio=("b", "a"))["ratio"] == 0.4
    assert r.raw["a"][0] == {"round": 1}


def test_rounds_refuses_out_of_turn():
    r = Rounds("trl", "ours", rounds=1, warmup=0)
    with pytest.raises(RuntimeError, match="ours measured out of turn"):
        r.record("ours", 1.0)
    r.record("trl", 2.0)
    r.record("ours", 1.0)
    with pytest.raises(RuntimeError, match="out of turn"):
        r.record("trl", 2.0)  # all rounds taken


# --------------------------------------------------------------------------- --strict


@pytest.fixture
def fake_bench(monkeypatch):
    mod = types.ModuleType("fake_bench_module")
    mod.run = lambda quick: Result("fake", quick, {}, [{"a": 1.0}], [("a", "A")])
    monkeypatch.setitem(sys.modules, "fake_bench_module", mod)
    monkeypatch.setattr(runner, "BENCHMARKS", {"fake": "fake_bench_module"})

    def loads(*readings, others_cores: float = 0.0):
        """The load average before (and after) the benchmark, and the cores other processes
        used meanwhile (what `OthersWatch` would have seen)."""
        it = iter(readings)
        monkeypatch.setattr(runner, "load_average", lambda: [next(it), 0.0, 0.0])

        class Watched:
            cores = others_cores

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return None
        monkeypatch.setattr(runner, "OthersWatch", Watched)
    return loads


def test_strict_refuses_a_run_beside_other_work(fake_bench, tmp_path, capsys):
    fake_bench(0.5, 1.5, others_cores=0.6)
    written, refused = runner.run_benchmarks(["fake"], True, tmp_path, strict=True)
    assert (written, refused) == ([], ["fake"]) and not list(tmp_path.iterdir())
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bench fake: not written (--strict): other processes used 0.60 cores on average (> 0.25)"]


def test_strict_writes_a_run_that_raised_the_load_by_itself(fake_bench, tmp_path):
    fake_bench(0.5, 2.2, others_cores=0.02)
    assert runner.run_benchmarks(["fake"], True, tmp_path, strict=True) == ([tmp_path / "fake.json"], [])


def test_strict_does_not_start_on_a_loaded_machine(fake_bench, tmp_path, monkeypatch):
    fake_bench(3.0)
    monkeypatch.setattr(sys.modules["fake_bench_module"], "run", lambda quick: pytest.fail("ran"))
    assert runner.run_benchmarks(["fake"], True, tmp_path, strict=True) == ([], ["fake"])


def test_without_strict_the_result_is_written_and_flagged(fake_bench, tmp_path):
    import json

    fake_bench(0.5, 1.5, others_cores=0.6)
    written, refused = runner.run_benchmarks(["fake"], True, tmp_path)
    doc = json.loads(written[0].read_text())
    assert refused == [] and doc["quiet"] is False and doc["others_cores"] == 0.6
    assert "other processes used 0.60 cores" in doc["not_quiet_reason"]


def test_strict_writes_a_quiet_result(fake_bench, tmp_path):
    fake_bench(0.5, 0.7)
    written, refused = runner.run_benchmarks(["fake"], True, tmp_path, strict=True)
    assert refused == [] and written == [tmp_path / "fake.json"]


def test_other_processes_decide_where_they_were_watched():
    # The benchmark's own load (0.6 → 2.4) does not count once other processes were watched...
    assert judge_quiet([0.6, 0, 0], [2.4, 0, 0], others_cores=0.05).quiet
    # ...what the others used does, and a busy start still does.
    busy = judge_quiet([0.6, 0, 0], [2.4, 0, 0], others_cores=0.8)
    assert not busy.quiet and busy.reason == "other processes used 0.80 cores on average (> 0.25)"
    assert not judge_quiet([1.6, 0, 0], [1.6, 0, 0], others_cores=0.0).quiet


def test_the_watch_sees_a_process_outside_this_tree_and_not_its_own_children():
    import subprocess
    import sys
    import time

    from bench.common import OthersWatch

    spin = "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass"
    # What the rest of the machine does meanwhile is in both figures: on a machine already
    # busy (another test run beside this one) neither can be told apart, so say so instead.
    with OthersWatch(interval_s=0.5) as baseline:
        time.sleep(2.5)
    if baseline.cores > 0.2:
        pytest.skip(f"other processes already use {baseline.cores:.2f} cores: the watch's figures would be theirs")
    # Our own busy child does not count as other work.
    with OthersWatch(interval_s=0.5) as own:
        subprocess.run([sys.executable, "-c", spin], check=True)
    # A busy process outside this tree (started detached: its parent exits at once, so it is
    # re-parented away from us) does.
    detach = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {spin!r}], start_new_session=True)"
    with OthersWatch(interval_s=0.5) as other:
        subprocess.run([sys.executable, "-c", detach], check=True)
        time.sleep(3.0)
    assert own.cores < 0.3
    assert other.cores > 0.5


def test_an_actors_busy_time_is_the_union_of_its_call_spans():
    from bench.overhead import busy_seconds

    # A queued call's span starts when it reaches the actor, while the first still runs:
    # [0, 2) and [0.1, 4) overlap, so the actor was busy 4 s there, then 1 s more.
    assert busy_seconds([(5.0, 6.0), (0.0, 2.0), (0.1, 4.0)]) == 5.0
    assert busy_seconds([(0.0, 1.0), (0.2, 0.5)]) == 1.0 and busy_seconds([]) == 0.0
