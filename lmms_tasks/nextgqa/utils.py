"""NExT-GQA (rlt_nextgqa): grounded multiple-choice QA, metrics as NExT-GQA's eval_ground.py.

Acc@QA: right option. IoU / IoP: the predicted span against the truth, IoP being intersection
over the prediction's own length (a point prediction scores 1 inside the truth). Acc@GQA: right
option and IoP >= 0.5. The option and IoU are the reward's own; only IoP is computed here.
"""

from lmms_tasks.task import score_doc, shared_metrics


def intersection_over_prediction(pred, truth) -> float:
    if pred is None:
        return 0.0
    (start, end), (truth_start, truth_end) = pred, truth
    if start == end:
        return float(truth_start <= start <= truth_end)
    return max(0.0, min(end, truth_end) - max(start, truth_start)) / (end - start)


def process_results(doc, results):
    scored = score_doc(doc, results)
    correct, iou = scored.get("accuracy", 0.0), scored.get("iou", 0.0)
    iop = intersection_over_prediction((scored["parsed"] or {}).get("span"), doc["span"])
    return {
        "Acc@QA": 100.0 * correct,
        "Acc@GQA": 100.0 * (correct == 1.0 and iop >= 0.5),
        "mIoP": 100.0 * iop,
        **{f"IoP@{t}": 100.0 * (iop >= t) for t in (0.3, 0.5)},
        "mIoU": 100.0 * iou,
        **{f"IoU@{t}": 100.0 * (iou >= t) for t in (0.3, 0.5)},
        **shared_metrics(doc, scored),
    }
