"""Ray job entrypoint: DPO of the policy on (AI) preference pairs.

    python -m jobs.dpo --config configs/dpo-toy.yaml [--set k=v ...] [--overwrite]

Inside a Ray job RAY_ADDRESS is set and the workers join that cluster; run by hand it starts
a private local Ray. Same flags as `rlaif-ray dpo`.
"""

import sys

from rlaif_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["dpo", *sys.argv[1:]]))
