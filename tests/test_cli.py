"""The ``ppl-uq`` command."""

from ppl_uq import backends
from ppl_uq.cli import main


def test_backends_command_lists_every_backend_with_its_options(capsys):
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == backends()
    assert any("num_warmup" in line for line in lines if line.startswith("nuts"))


def test_unknown_command_prints_usage(capsys):
    assert main(["fly"]) == 2
    assert "usage: ppl-uq" in capsys.readouterr().err
