"""README.md opens with the two commands a newcomer types; CI must run exactly the test one."""

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _opening_commands():
    block = re.search(r"```(?:bash)?\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    demo, tests = _opening_commands()
    ci_commands = [
        line.strip()
        for line in (REPO / ".ci/run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_commands == [tests]
    assert "pytest" in tests and "cpu_env/setup.sh" in tests and "ruff check" in tests
    assert "demo" in demo


def _readme_cli_commands():
    """Every `openrlhf-video SUB ...` line in README's code blocks, as (subcommand, flags)."""
    commands = {}
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        for line in block.splitlines():
            match = re.search(
                r"openrlhf-video (data \w+|\S+)(.*)", line.split("  #")[0]
            )  # `data` has its own subcommands
            if match:
                flags = set(re.findall(r"(?<!\S)(--[\w.-]+)", match.group(2)))
                commands.setdefault(match.group(1), set()).update(flags)
    return commands


@pytest.mark.parametrize("subcommand", sorted(_readme_cli_commands()))
def test_readme_commands_exist_with_their_flags(subcommand, capfd, monkeypatch):
    """Guards README against drift: each subcommand it shows answers --help and knows every flag
    the README passes it (flags after the subcommand; lmms-eval's for `eval`). In-process: the
    heavy imports are already paid by the other tests."""
    from openrlhf_video.cli import SUBCOMMANDS, main

    assert subcommand.split()[0] in SUBCOMMANDS
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `train --help` runs OpenRLHF's CLI module
    try:
        code = main([*subcommand.split(), "--help"])
    except SystemExit as exit:  # argparse's --help
        code = exit.code
    out = capfd.readouterr()
    assert code in (0, None), out.err[-2000:]
    missing = [flag for flag in _readme_cli_commands()[subcommand] if flag not in out.out + out.err]
    assert not missing, f"README passes {missing} to `openrlhf-video {subcommand}`, which does not know them"
