"""Ray job entrypoint: a sweep of training runs on kept roles.

    python -m jobs.sweep --config configs/local.yaml --vary 'learner.lr=[1.0e-4, 5.0e-4]' [--sweep-dir DIR]

Inside a Ray job (`ray job submit`) RAY_ADDRESS is set and every run joins that cluster;
run by hand it starts one private local Ray for all of them. Same flags as `rlaif-ray sweep`.
"""

import sys

from rlaif_ray.job_env import check_job_python

if __name__ == "__main__":
    check_job_python()  # one line naming what this interpreter lacks, before any heavy import
    from rlaif_ray.cli import main

    sys.exit(main(["sweep", *sys.argv[1:]]))
