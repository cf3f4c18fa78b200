"""OpenRLHF 0.11.2 reward file: pass this file's path to `--reward.remote_url`.

OpenRLHF loads it with importlib inside every rollout actor and calls
`reward_func(queries, prompts, labels)` per sample in a thread. An exception there silently
turns the reward into None and crashes training much later, so this function never raises.

Settings come from the environment because OpenRLHF passes no arguments to the file:
  OPENRLHF_VIDEO_THINK=0                      no-think format (only <answer>…</answer>)
  OPENRLHF_VIDEO_REWARD_WEIGHTS=iou=0.7,format=0.3   override the per-task presets
"""

import logging
import os
import sys
from pathlib import Path

import torch

# OpenRLHF imports this file by path: from a source checkout that is not pip-installed, the
# package beside it is not importable yet. Appended, so an installed copy still wins.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from reward_plugins.protocol import LOG_KEYS, parse_weights, score_batch, think_from_env  # noqa: E402

logger = logging.getLogger("reward_plugins")

THINK = think_from_env()
# A bad setting fails here, when OpenRLHF loads the file, not at the first reward.
WEIGHTS = parse_weights(os.environ.get("OPENRLHF_VIDEO_REWARD_WEIGHTS", ""))


def reward_func(queries, prompts, labels):
    try:
        out = score_batch(queries, prompts, labels, think=THINK, weights=WEIGHTS)
    except Exception:  # malformed arguments: zero rewards, counted as unscored
        logger.exception("reward_func got arguments it cannot score; rewards set to 0")
        count = len(queries) if isinstance(queries, (list, tuple)) else 1
        out = {"rewards": [0.0] * count, "scores": [0.0] * count, "extra_logs": {k: [0.0] * count for k in LOG_KEYS}}
        out["extra_logs"]["unscored"] = [1.0] * count
    return {
        "rewards": torch.tensor(out["rewards"], dtype=torch.float32),
        "scores": torch.tensor(out["scores"], dtype=torch.float32),
        "extra_logs": {name: torch.tensor(values, dtype=torch.float32) for name, values in out["extra_logs"].items()},
    }
