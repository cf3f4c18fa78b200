"""README.md opens with the two commands a newcomer types; CI must run exactly the test one."""

import re
import subprocess
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
        line.strip() for line in (REPO / ".ci/run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_commands == [tests]
    assert "pytest" in tests and "cpu_env/setup.sh" in tests
    assert "demo" in demo


def _readme_cli_commands():
    """Every `openrlhf-video SUB ...` line in README's code blocks, as (subcommand, flags)."""
    commands = {}
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        for line in block.splitlines():
            match = re.search(r"openrlhf-video (\S+)(.*)", line.split("  #")[0])
            if match:
                flags = set(re.findall(r"(?<!\S)(--[\w.-]+)", match.group(2)))
                commands.setdefault(match.group(1), set()).update(flags)
    return commands


@pytest.mark.parametrize("subcommand", sorted(_readme_cli_commands()))
def test_readme_commands_exist_with_their_flags(subcommand):
    """Guards README against drift: each subcommand it shows answers --help and knows every flag
    the README passes it (flags after the subcommand; lmms-eval's for `eval`)."""
    from openrlhf_video.cli import SUBCOMMANDS

    assert subcommand in SUBCOMMANDS
    out = subprocess.run(
        [sys.executable, "-m", "openrlhf_video", subcommand, "--help"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    missing = [flag for flag in _readme_cli_commands()[subcommand] if flag not in out.stdout + out.stderr]
    assert not missing, f"README passes {missing} to `openrlhf-video {subcommand}`, which does not know them"
