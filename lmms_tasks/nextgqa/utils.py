"""NExT-GQA (rlt_nextgqa): grounded multiple-choice QA, each metric as NExT-GQA defines it.

Reference: NExT-GQA code/TempGQA/eval_ground.py, `get_tIoU` (IoU and IoP of one segment) and
`eval_ground` (per question the best IoU and the best IoP over its true segments, separately;
thresholds with >=; Acc@GQA = right option and IoP >= 0.5; the truth as annotated). Acc@QA is the
right option. IoU and the option are the reward's own (`reward_plugins.score`: the best segment's
IoU, the parsed letter), so the metric and the reward agree answer by answer. An answer without a
parsable option or span scores 0 there and stays in the denominator: eval_ground assumes every
question has a prediction.
"""

from lmms_tasks.task import score_doc, shared_metrics
from reward_plugins import parse_label, record_label


def intersection_over_prediction(pred, truth) -> float:
    """The share of the predicted span inside the true one, as `get_tIoU`'s IoP: a point prediction
    scores 1 inside the truth (bounds included), else 0; a reversed one 0; otherwise the
    intersection (at least 0) over the prediction's own length. 0 for no prediction."""
    if pred is None:
        return 0.0
    (start, end), (truth_start, truth_end) = pred, truth
    if start == end:
        return float(truth_start <= start <= truth_end)
    if not end > start:
        return 0.0
    return max(0.0, min(end, truth_end) - max(start, truth_start)) / (end - start)


def process_results(doc, results):
    scored = score_doc(doc, results)
    correct, iou = scored.get("accuracy", 0.0), scored.get("iou", 0.0)
    predicted = (scored["parsed"] or {}).get("span")
    # The truths as the reward scored them: with a clip, on the clip's time axis (record_label).
    truths = parse_label(record_label(doc))["segments"]
    iop = max(intersection_over_prediction(predicted, truth) for truth in truths)
    return {
        "Acc@QA": 100.0 * correct,
        "Acc@GQA": 100.0 * (correct == 1.0 and iop >= 0.5),
        "mIoP": 100.0 * iop,
        **{f"IoP@{t}": 100.0 * (iop >= t) for t in (0.3, 0.5)},
        "mIoU": 100.0 * iou,
        **{f"IoU@{t}": 100.0 * (iou >= t) for t in (0.3, 0.5)},
        **shared_metrics(doc, scored),
    }
