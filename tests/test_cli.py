"""The ``ppl-uq`` command: subcommands with help, version, clear errors."""

import pytest

from ppl_uq import backends
from ppl_uq.cli import main


def test_backends_command_prints_a_table_of_every_backend(capsys):
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["backend", "kind"]
    assert [line.split()[0] for line in lines[1:]] == backends()
    nuts = next(line for line in lines if line.startswith("nuts"))
    assert "mcmc" in nuts and "num_warmup=" in nuts


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["report", "--help"], ["--version"]])
def test_help_and_version_exit_zero(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    assert "ppl-uq" in capsys.readouterr().out


def test_unknown_command_and_experiment_are_errors(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fly"])
    assert done.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown experiment 'nope'"):
        main(["run", "nope"])


def test_report_of_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        main(["report", str(tmp_path)])


def test_experiment_help_lists_shared_run_options(capsys):
    assert main(["run", "spheres", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--profile", "--workers", "--scheduler", "--fresh", "--backends", "(default: quick)"):
        assert flag in text, flag
