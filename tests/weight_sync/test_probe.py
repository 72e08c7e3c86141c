"""The sync probe's verdict: the reading against its bound, and what `sync.probe_action` asks.

The stage (`rlaif_ray.driver.train.probe`) is checked here with fake roles: no Ray, no engines.
"""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest

from rlaif_ray.config import PROBE_BOUNDS, SyncSection
from rlaif_ray.weight_sync.probe import judge_probe, should_probe
from rlaif_ray.errors import RunStopped


def test_within_bound_is_ok():
    assert judge_probe(2e-6, 1e-4, "warn").action == "ok"
    assert judge_probe(1e-4, 1e-4, "stop").action == "ok"  # the bound itself is allowed
    assert judge_probe(0.0, 1e-4, "stop").message == ""


@pytest.mark.parametrize("action", ["warn", "stop"])
def test_above_bound_takes_the_configured_action(action):
    v = judge_probe(3.2e-2, 1e-4, action, engine="rollout-0")
    assert v.action == action
    assert "\n" not in v.message
    assert "rollout-0" in v.message and "3.20e-02" in v.message and "1.0e-04" in v.message
    assert f"sync.probe_action: {action}" in v.message


@pytest.mark.parametrize("diff", [math.nan, math.inf])
def test_non_finite_reading_is_never_ok(diff):
    assert judge_probe(diff, 1e-4, "stop").action == "stop"


def test_bound_defaults_per_dtype_and_override():
    s = SyncSection()
    assert s.probe_action == "warn" and s.probe_bound is None
    assert s.probe_bound_for("float32") == PROBE_BOUNDS["float32"]
    assert s.probe_bound_for("bfloat16") == PROBE_BOUNDS["bfloat16"]
    # Measured (bench/probe_bounds.py, SmolLM2): correct syncs read ≤ 1.6e-5 in fp32, ≤ 0.46 in
    # bf16; a stale prefix cache after a 4-step lr 1e-6 update 1.4e-2 in fp32.
    assert 1.6e-5 < PROBE_BOUNDS["float32"] < 1.4e-2
    assert 0.46 < PROBE_BOUNDS["bfloat16"]
    assert PROBE_BOUNDS["float16"] == PROBE_BOUNDS["bfloat16"]
    assert SyncSection(probe_bound=0.25).probe_bound_for("float32") == 0.25


def test_bound_and_action_are_validated():
    with pytest.raises(ValueError):
        SyncSection(probe_bound=0.0)
    with pytest.raises(ValueError):
        SyncSection(probe_action="ignore")


# --------------------------------------------------------------------------- the stage, faked


class _Pool:
    """Stands in for an ActorPool: each method's answer, per actor (the probe stage's logic
    is under test here; tests/e2e/test_weight_sync.py runs the real one)."""

    def __init__(self, **answers):
        self.answers, self.restarts = answers, 0

    def call(self, i, method, *args, **kw):
        return self.answers[method]

    def call_all(self, method, *args, **kw):
        return [self.answers[method]]


def _fake_run(engine_logp, learner_logp, **sync):
    cfg = SimpleNamespace(sync=SyncSection(**sync), model=SimpleNamespace(dtype="float32"),
                          run=SimpleNamespace(seed=0))
    roles = SimpleNamespace(rollout=_Pool(probe=([5, 6], engine_logp)), learners=_Pool(probe_logprobs=learner_logp))
    return SimpleNamespace(cfg=cfg, roles=roles, probe_prompt=[1, 2, 3])


@pytest.fixture
def no_ray_get():
    from rlaif_ray.driver import train

    return train


def test_stage_warns_once_and_goes_on(no_ray_get, caplog):
    run = _fake_run([-1.0, -2.0], [-1.0, -2.5], probe_bound=1e-3)
    with caplog.at_level(logging.WARNING, logger="rlaif_ray"):
        row = no_ray_get.probe(run)
    assert row == {"sync/max_logprob_diff": 0.5}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rollout-0" in warnings[0].getMessage() and "5.00e-01" in warnings[0].getMessage()


def test_stage_stops_the_run(no_ray_get):
    run = _fake_run([-1.0, -2.0], [-1.0, -2.5], probe_bound=1e-3, probe_action="stop")
    with pytest.raises(RunStopped, match=r"rollout-0 .* 5\.00e-01"):
        no_ray_get.probe(run)


def test_stage_quiet_within_bound(no_ray_get, caplog):
    run = _fake_run([-1.0, -2.0], [-1.0, -2.0 + 1e-6], probe_action="stop")
    with caplog.at_level(logging.WARNING, logger="rlaif_ray"):
        assert no_ray_get.probe(run)["sync/max_logprob_diff"] == pytest.approx(1e-6)
    assert not caplog.records


# --------------------------------------------------------------------------- sync.probe_every


@pytest.mark.parametrize("iteration, first, every, replaced, expected", [
    (1, True, 4, False, True),     # a run's first iteration: always
    (2, False, 4, False, False),
    (3, False, 4, False, False),
    (4, False, 4, False, True),    # 4 % 4 == 0
    (5, False, 4, False, False),
    (6, False, 4, True, True),     # a rollout actor was replaced since the last probe
    (7, True, 4, False, True),     # first iteration of a run resumed at 6
    (8, False, 4, False, True),    # the resumed run keeps the schedule: 8 % 4 == 0
    (2, False, 1, False, True),    # every = 1: every sync, as before the option existed
    (13, False, 1, False, True),
])
def test_should_probe_hand_cases(iteration, first, every, replaced, expected):
    assert should_probe(iteration, first, every, replaced) is expected


def test_probe_every_defaults_to_every_fifth_sync_and_is_validated():
    assert SyncSection().probe_every == 5
    with pytest.raises(ValueError):
        SyncSection(probe_every=0)


def test_skipped_iterations_have_no_reading(no_ray_get):
    # every 3; start fresh, rollout-1 replaced during iteration 5.
    run = _fake_run([-1.0], [-1.0], probe_every=3)
    run.roles.rollout.restarts = 0
    run.probed_restarts = None
    probed = []
    for it in range(7):
        run.iteration = it
        if it == 4:
            run.roles.rollout.restarts = 1
        if no_ray_get.probe_if_due(run):
            probed.append(it + 1)
    assert probed == [1, 3, 5, 6]   # first; 3; replacement at 5; 6; (7 skipped)


def test_probe_off_never_probes(no_ray_get):
    run = _fake_run([-1.0], [-1.0], probe=False)
    run.roles.rollout.restarts, run.probed_restarts, run.iteration = 0, None, 0
    assert no_ray_get.probe_if_due(run) == {}
