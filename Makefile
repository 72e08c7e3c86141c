# The two commands of the README. Each creates .venv on first use.
.PHONY: train test env models

env:
	@bash scripts/ensure-env.sh

models: env
	@.venv/bin/rlaif-ray make-tiny-models .cache/tiny-models

# The embedded default: a short CPU PPO run with tiny local models (configs/local.yaml).
train: models
	.venv/bin/rlaif-ray train --config configs/local.yaml --run-dir runs/local --overwrite

# The whole test suite (CPU only; builds the tiny models once, cached in .cache/).
# Two pytest workers, one test file each at a time (module fixtures stay shared): most of a
# test's wall time is spent waiting (actors starting, timeouts, subprocesses), so a second
# file overlaps it. Two, not one per core: each worker starts a private Ray with its actors.
test: env
	.venv/bin/python -m pytest tests -q -n 2 --dist loadfile --durations=60
