"""Ray job entrypoint: PPO with AI feedback.

    python -m jobs.train_ppo --config configs/local.yaml [--run-dir DIR] [--set k=v ...]

Inside a Ray job (`ray job submit` / `rlaif-ray submit`) RAY_ADDRESS is set and the run joins
that cluster; run by hand it starts a private local Ray. Same flags as `rlaif-ray train`.
"""

import sys

from rlaif_ray.job_env import check_job_python

if __name__ == "__main__":
    check_job_python()  # one line naming what this interpreter lacks, before any heavy import
    from rlaif_ray.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
