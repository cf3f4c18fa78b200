"""README.md opens with the two commands a newcomer types; CI must run exactly the test one."""

import re
from pathlib import Path

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
