"""lmms-eval tasks that score exactly like the training rewards: rlt_charades_sta,
rlt_activitynet_tvg, rlt_mvbench, rlt_nextgqa and the group rlt_video.

Give lmms-eval this folder: `lmms-eval --include_path "$(python -c 'import lmms_tasks; print(lmms_tasks.TASKS_DIR)')" ...`
or use `openrlhf-video eval ...`, which adds it.
"""

import os
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent


def local_records(path: str, fmt: str | None, native_format: str, video_root: str | None) -> list[dict]:
    """The records of a task's `<ENV>_ANNOTATIONS` file (lmms_tasks/task.py); also what
    `openrlhf-video eval` checks before lmms-eval starts. Raises DataError naming file and line."""
    from openrlhf_video.data import load_config, read_records

    if path.endswith((".yaml", ".yml")):  # a data config names formats and video roots itself
        return load_config(path)
    fmt = fmt or ("records" if path.endswith(".jsonl") else native_format)
    root = video_root or os.path.dirname(os.path.abspath(path))
    return [dict(r, video=os.path.join(root, r["video"])) for r in read_records(path, fmt)]
