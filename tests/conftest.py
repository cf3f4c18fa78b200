"""Shared fixtures: the offline tiny Qwen2.5-VL and the synthetic video dataset (both cached on disk)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (the CLI, Ray workers, lmms-eval) must import this checkout, and nothing may
# reach a model hub.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
# A rollout whose vLLM prompt ids differ from the training ones fails the test that made it.
os.environ["OPENRLHF_VIDEO_PROMPT_GUARD"] = "raise"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The offline tiny Qwen2.5-VL (built once, then reused from ~/.cache/openrlhf-video/fixtures);
    tests of every model family build theirs with `build_tiny_model(family)`."""
    from openrlhf_video.tiny_model import build_tiny_model

    return build_tiny_model("qwen2_5_vl")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A fresh synthetic dataset per session (8 clips, 32 records, ~2 s to write): tests may
    modify or corrupt it without affecting other sessions. Records' videos are relative to it."""
    from openrlhf_video.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n_videos=8, seed=0)


def _pins(distribution: str, extra: str | None = None) -> dict[str, str]:
    """{name: version} of the `==` requirements of a distribution (in one extra, or unconditional)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    pins = {}
    for line in requires(distribution) or []:
        req = Requirement(line)
        in_scope = req.marker.evaluate({"extra": extra or ""}) if req.marker else extra is None
        exact = [spec.version for spec in req.specifier if spec.operator == "=="]
        if in_scope and exact:
            pins[req.name] = exact[0]
    return pins


@pytest.fixture(scope="session")
def pins():
    """`pins(distribution, extra=None)`: the versions an installed distribution's metadata pins."""
    return _pins
