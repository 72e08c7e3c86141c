"""Ray job entrypoint: rejection sampling (best-of-n by the AI labeler, SFT on the winners).

    python -m jobs.rejection_sampling --config configs/rejection-sampling-toy.yaml [--overwrite]

Inside a Ray job RAY_ADDRESS is set and the run joins that cluster; run by hand it starts a
private local Ray. Same flags as `rlaif-ray rejection-sampling`.
"""

import sys

from rlaif_ray.job_env import check_job_python

if __name__ == "__main__":
    check_job_python()  # one line naming what this interpreter lacks, before any heavy import
    from rlaif_ray.cli import main

    sys.exit(main(["rejection-sampling", *sys.argv[1:]]))
