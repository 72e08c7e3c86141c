"""Runs several end-to-end modules read: each is started once per session (a run's roles take
~25 s to start on 2 cores, most of an end-to-end test), and no test writes into them (copy
the folder first)."""

from __future__ import annotations

import pytest

from shared_runs import CHECKPOINTED

from rlaif_ray.driver.run import train_run


@pytest.fixture(scope="session")
def default_run(warm_roles, make_config, tmp_path_factory):
    """configs/local.yaml as shipped, on the tiny models: (config, run dir, summary)."""
    cfg = make_config()
    run_dir = tmp_path_factory.mktemp("default") / "run"
    return cfg, run_dir, train_run(cfg, run_dir, progress=False, warm=warm_roles)


@pytest.fixture(scope="session")
def checkpointed_run(warm_roles, make_config, tmp_path_factory):
    """4 iterations of CHECKPOINTED without interruption, checkpoints at 2 and 4: what resumed
    and restarted runs must match, and what damaged-checkpoint tests damage (in a copy)."""
    run_dir = tmp_path_factory.mktemp("checkpointed") / "run"
    train_run(make_config("run.iterations=4", *CHECKPOINTED), run_dir, progress=False, warm=warm_roles)
    return run_dir
