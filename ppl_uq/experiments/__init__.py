"""Paper reproductions runnable from the installed package (``ppl-uq spheres ...``); the scripts in the
repository's top-level ``experiments/`` folder call these."""
