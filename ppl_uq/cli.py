"""The ``ppl-uq`` command: ``ppl-uq backends`` lists the inference backends; ``ppl-uq spheres ...`` runs
the adversarial-spheres comparison (same flags as experiments/adversarial_spheres.py); ``ppl-uq digits ...``
the harness comparison on the digits MLP (experiments/digits_harness.py)."""

from __future__ import annotations

import os
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``ppl-uq COMMAND [ARGS]``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = ("backends", "spheres", "digits")
    if not args or args[0] not in commands:
        print(f"usage: ppl-uq {{{','.join(commands)}}} [options]   (ppl-uq spheres --help for its options)",
              file=sys.stderr)
        return 2
    if args[0] == "backends":
        from ppl_uq import backends, default_options

        for name in backends():
            print(f"{name:14s} {default_options(name)}")
        return 0
    if args[0] == "digits":
        from ppl_uq.experiments.digits_harness import main as digits_main

        return digits_main(args[1:])
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    from ppl_uq.experiments.adversarial_spheres import main as spheres_main

    return spheres_main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
