"""Reproduce Bekasov & Murray's Table 1 across every inference method.

    python experiments/adversarial_spheres.py --profile quick --out runs/spheres-quick
    python experiments/adversarial_spheres.py --profile paper --out runs/spheres-paper

Two chains run in parallel on two host devices, set before JAX starts.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

from ppl_uq.experiments.adversarial_spheres import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
