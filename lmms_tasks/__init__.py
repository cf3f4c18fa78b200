"""lmms-eval tasks that score exactly like the training rewards: rlt_charades_sta,
rlt_activitynet_tvg, rlt_mvbench, rlt_nextgqa and the group rlt_video.

Give lmms-eval this folder: `lmms-eval --include_path "$(python -c 'import lmms_tasks; print(lmms_tasks.TASKS_DIR)')" ...`
or use `openrlhf-video eval ...`, which adds it.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
