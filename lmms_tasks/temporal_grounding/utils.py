"""Temporal grounding (rlt_charades_sta, rlt_activitynet_tvg): per-query IoU, each metric as the
official code defines it.

References: rlt_charades_sta, lmms-eval 0.7.3 tasks/charades_sta/utils.py `iou` and
`_temporal_grounding_compute_metrics` (Temporal-R1's lmms_eval/tasks/charades_sta/eval_tvg.py
`iou` and its __main__ alike); rlt_activitynet_tvg, lmms-eval 0.7.3 tasks/timelens/utils.py `iou`
and `_timelens_compute_metrics`. mIoU is the mean IoU of the span as the answer states it (a
reversed span 0, no clamping), R@t the share with IoU >= t, all in percent. The IoU is the
reward's `iou`, so the metric and the reward agree answer by answer. An answer without a parsable
span scores 0 and stays in the denominator, as in both references. Each query is one doc and one
row of every metric, duplicates included (the built-in tasks key results by
video+caption+timestamp and so collapse them).
"""

import ast

from datasets import Dataset

from lmms_tasks.task import score_doc, shared_metrics
from openrlhf_video.data.records import validate_record


def process_results(doc, results):
    scored = score_doc(doc, results)
    iou = scored.get("iou", 0.0)
    return {
        "mIoU": 100.0 * iou,
        **{f"R@{t}": 100.0 * (iou >= t) for t in (0.3, 0.5, 0.7)},
        **shared_metrics(doc, scored),
    }


def _span(value) -> list:
    # The hub datasets store spans as lists or as their text; TimeLens nests them ([[s, e]]).
    span = ast.literal_eval(value) if isinstance(value, str) else value
    return span[0] if isinstance(span[0], (list, tuple)) else span


def _hub_records(dataset, source: str, video: str, question: str, span: str) -> Dataset:
    return Dataset.from_list([
        validate_record({
            "id": f"{source}/{row[video]}#{i}", "task": "tvg", "video": row[video], "question": row[question],
            "span": _span(row[span]), "duration": row.get("duration"), "source": source,
        }, f"{source} hub row {i}")
        for i, row in enumerate(dataset)
    ])  # fmt: skip


def charades_hub_records(dataset):
    """lmms-eval/charades_sta rows (video, caption, timestamp) as records."""
    return _hub_records(dataset, "charades_sta", video="video", question="caption", span="timestamp")


def activitynet_hub_records(dataset):
    """TimeLens' ActivityNet split (video_path, query, span), lmms-eval's timelens_activitynet data."""
    return _hub_records(dataset, "activitynet", video="video_path", question="query", span="span")
