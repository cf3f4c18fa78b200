"""NExT-GQA (rlt_nextgqa): grounded multiple-choice QA, metrics as NExT-GQA's eval_ground.py.

Acc@QA: right option. IoU / IoP: the predicted span against the truth, IoP being intersection
over the prediction's own length (a point prediction scores 1 inside the truth). Acc@GQA: right
option and IoP >= 0.5. A question with several ground-truth segments (the record's `segments`)
is scored, like eval_ground.py does, by its best segment for IoU and for IoP separately; the
reward scores the one span covering them. Option, span parser and IoU are the reward's own.
"""

from lmms_tasks.task import score_doc, shared_metrics
from reward_plugins import record_label, temporal_iou


def intersection_over_prediction(pred, truth) -> float:
    if pred is None:
        return 0.0
    (start, end), (truth_start, truth_end) = pred, truth
    if start == end:
        return float(truth_start <= start <= truth_end)
    return max(0.0, min(end, truth_end) - max(start, truth_start)) / (end - start)


def process_results(doc, results):
    scored = score_doc(doc, results)
    correct, predicted = scored.get("accuracy", 0.0), (scored["parsed"] or {}).get("span")
    # With a clip the model answers on the clip's time axis, and the parsed span is on it: each
    # truth moves there by the reward's own rule (record_label), as the span does for the reward.
    truths = [record_label({**doc, "span": truth})["span"] for truth in doc.get("segments") or [doc["span"]]]
    iou = max(temporal_iou(predicted, truth) for truth in truths) if predicted is not None else 0.0
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
