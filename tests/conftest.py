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
