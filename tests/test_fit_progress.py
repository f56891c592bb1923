"""``fit``'s progress lines: shown when asked, silent otherwise, never changing a number."""

import jax
import numpy as np

import ppl_uq


def test_progress_lines_are_printed_only_when_asked(tiny_spheres, capsys):
    data, model = tiny_spheres
    quiet = ppl_uq.fit("map", model, data.train, rng_key=jax.random.key(1), progress=False)
    assert capsys.readouterr().err == ""
    loud = ppl_uq.fit("map", model, data.train, rng_key=jax.random.key(1), progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[fit map] fitting 120 points") and lines[-1].startswith("[fit map] done in")
    for name in quiet.draws:
        np.testing.assert_array_equal(quiet.draws[name], loud.draws[name])
