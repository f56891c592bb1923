"""Inference methods on a Bayesian MLP for scikit-learn's bundled digits, through the common harness.

    python experiments/digits_harness.py --profile quick --out runs/digits-quick
    python experiments/digits_harness.py --profile full --out runs/digits-full
"""

import sys

from ppl_uq.experiments.digits_harness import main

if __name__ == "__main__":
    sys.exit(main())
