"""Conformance: every rlt_ metric equals its official definition, per answer and aggregated, and the
reward's IoU equals the metric's per-answer IoU.

The official side is computed here, apart from our code, from the published definitions:
- IoU: the installed lmms-eval 0.7.3's own functions, tasks/charades_sta/utils.py `iou`,
  tasks/timelens/utils.py `iou` and tasks/charades_sta/eval_tvg.py `iou` (Temporal-R1's), on the
  span as the answer states it; mIoU and R@t as `_temporal_grounding_compute_metrics` /
  `_timelens_compute_metrics` (100 * mean, share with IoU >= t).
- NExT-GQA: code/TempGQA/eval_ground.py `get_tIoU` and `eval_ground`, written out below from their
  definition and run on the raw annotation files in ../shared/data/nextgqa/ (read here with csv and
  json, not with our converter).
- MVBench: Ask-Anything video_chat2/mvbench.ipynb: right answers over all questions, per subtask and
  over all subtasks.
Predictions are generated: exact, random, point, reversed and out-of-range spans, answers with no
span; right, wrong and missing options. An answer with nothing parsable is a prediction that scores
0 (the official scripts assume every question has one).
"""

import csv
import functools
import json
import random
from pathlib import Path

import pytest
import yaml

from lmms_tasks import TASKS_DIR
from openrlhf_video.data import label_json
from openrlhf_video.data.cli import main as data_main
from reward_plugins import score, temporal_iou

NEXTGQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nextgqa"
SPLITS = {"val": 3358, "test": 5553}  # questions per official split (NExT-GQA's README)
TOLERANCE = 0.01  # points (percent): the acceptance bound on any metric's difference


# ---------------------------------------------------------------- the official definitions
@functools.cache
def lmms_eval_ious():
    """The installed lmms-eval's own IoU functions (official code, not ours)."""
    from lmms_eval.tasks.charades_sta import eval_tvg
    from lmms_eval.tasks.charades_sta import utils as charades
    from lmms_eval.tasks.timelens import utils as timelens

    return {"charades_sta.iou": charades.iou, "timelens.iou": timelens.iou, "eval_tvg.iou": eval_tvg.iou}


def official_grounding_iou(truth, pred) -> float:
    """lmms-eval's `iou(gt, pred)` of the stated span; an answer it cannot read scores 0."""
    return 0.0 if pred is None else lmms_eval_ious()["charades_sta.iou"](truth, pred)


def eval_ground_tiou(truth, pred) -> tuple[float, float]:
    """NExT-GQA eval_ground.py `get_tIoU(loc, span)`: (IoU, IoP) of a predicted span with one true
    segment. A point prediction: IoU 0, IoP 1 inside the segment (bounds included), else 0. Otherwise
    the signed overlap over the union's extent and over the prediction's length (0 where that
    extent is not positive); eval_ground keeps the best per question from 0, so negatives vanish."""
    (truth_start, truth_end), (start, end) = truth, pred
    if start == end:
        return 0.0, float(truth_start <= start <= truth_end)
    overlap = min(truth_end, end) - max(truth_start, start)
    union = max(truth_end, end) - min(truth_start, start)
    return (overlap / union if union > 0 else 0.0), (overlap / (end - start) if end > start else 0.0)


def eval_ground_question(segments, pred, right: bool) -> dict:
    """One question's row of eval_ground: the best IoU and best IoP over its segments, each
    separately, thresholds with >=, Acc@GQA = right answer and IoP >= 0.5; Acc@QA = right answer."""
    best_iou = best_iop = 0.0
    for segment in segments if pred is not None else []:
        iou, iop = eval_ground_tiou(segment, pred)
        best_iou, best_iop = max(best_iou, iou), max(best_iop, iop)
    return {
        "Acc@QA": 100.0 * right,
        "Acc@GQA": 100.0 * (right and best_iop >= 0.5),
        "mIoP": 100.0 * best_iop,
        "IoP@0.3": 100.0 * (best_iop >= 0.3),
        "IoP@0.5": 100.0 * (best_iop >= 0.5),
        "mIoU": 100.0 * best_iou,
        "IoU@0.3": 100.0 * (best_iou >= 0.3),
        "IoU@0.5": 100.0 * (best_iou >= 0.5),
    }


def official_grounding_row(truth, pred) -> dict:
    iou = official_grounding_iou(truth, pred)
    return {"mIoU": 100.0 * iou, **{f"R@{t}": 100.0 * (iou >= t) for t in (0.3, 0.5, 0.7)}}


def mean(rows: list[dict], metric: str) -> float:
    """The official aggregation: 100 * right (or summed IoU) over all questions."""
    return sum(row[metric] for row in rows) / len(rows)


# ---------------------------------------------------------------- generated predictions
SPAN_KINDS = ("exact", "random", "overlap", "twice_as_long", "point_inside", "point_at_end", "point_outside",
              "reversed", "reversed_inside", "past_end", "before_start", "none")  # fmt: skip


def predicted_span(kind: str, truth, duration: float, rng: random.Random):
    """A span of the given kind for a truth in a video of `duration` s, to 2 decimals (as stated)."""
    start, end = truth
    length = end - start
    inside, outside, late, early = (rng.uniform(start, end), end + rng.uniform(0.5, 5.0),
                                    duration + rng.uniform(1.0, 30.0), -rng.uniform(0.5, 10.0))  # fmt: skip
    spans = {
        "exact": (start, end),
        "random": sorted((rng.uniform(0, duration), rng.uniform(0, duration))),
        "overlap": (start + rng.uniform(-length, length), end + rng.uniform(-length, length)),
        "twice_as_long": (start - length, end),  # IoU and IoP at the 0.5 threshold
        "point_inside": (inside, inside),
        "point_at_end": (end, end),  # a segment's bounds count as inside
        "point_outside": (outside, outside),
        "reversed": (end, start),
        "reversed_inside": (end - 0.1 * length, start + 0.1 * length),
        "past_end": (start, late),
        "before_start": (early, end),
        "none": None,
    }
    span = spans[kind]
    return None if span is None else (round(span[0], 2), round(span[1], 2))


def stated(span, style: int) -> str:
    """The span as a model writes it: Temporal-R1's JSON, "[a, b]" or "from a to b seconds"."""
    if span is None:
        return "I cannot tell when it happens."
    a, b = span
    return (f'{{"start_time": {a}, "end_time": {b}}}', f"[{a}, {b}]", f"from {a} to {b} seconds")[style % 3]


def grounding_truths(n: int, seed: int):
    """n (truth, duration) pairs; a few truths start or end slightly outside the video, as annotated."""
    rng = random.Random(seed)
    for k in range(n):
        duration = round(rng.uniform(20, 200), 2)
        start = round(rng.uniform(0, duration * 0.8), 2)
        end = round(min(duration, start + rng.uniform(1, duration * 0.5)), 2)
        if k % 50 == 0:
            start, end = -0.2, end + 0.4
        yield (start, end), duration


# ---------------------------------------------------------------- lmms-eval tasks, loaded as lmms-eval does
def load_tasks(names: list[str], env: dict) -> dict:
    from lmms_eval.tasks import TaskManager

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
        return manager.load_task_or_group(names)


def docs_of(task) -> list[dict]:
    # No videos here (metrics only): a doc whose video is missing scores as an empty answer, so
    # every doc is marked found and scored on the generated answer.
    return [dict(doc, video_found=True) for doc in task.dataset[task.config.test_split]]


def compare(task, pairs, official_rows) -> dict:
    """Per-answer and aggregated metrics of `task` on (doc, response) pairs against the official
    rows; returns the largest difference per metric (points) after asserting each is < TOLERANCE."""
    ours = [task.process_results(doc, [response]) for doc, response in pairs]
    worst = {}
    for metric in official_rows[0]:
        per_answer = max(abs(row[metric] - off[metric]) for row, off in zip(ours, official_rows))
        aggregated = abs(task.aggregation()[metric]([row[metric] for row in ours]) - mean(official_rows, metric))
        worst[metric] = max(per_answer, aggregated)
        assert worst[metric] < TOLERANCE, f"{task.config.task} {metric}: ours differs from the official by {worst}"
    return worst


def assert_reward_iou_is_the_metric_iou(task, pairs):
    for doc, response in pairs:
        reward = score(response, label_json(doc))["iou"]
        assert 100.0 * reward == task.process_results(doc, [response])["mIoU"], (doc["id"], response)


# ---------------------------------------------------------------- the checks
def test_temporal_iou_is_every_official_iou():
    """temporal_iou equals lmms-eval's two `iou`s, Temporal-R1's and NExT-GQA's, on every kind of span."""
    rng = random.Random(1)
    for truth, duration in grounding_truths(400, seed=1):
        for kind in SPAN_KINDS[:-1]:
            pred = predicted_span(kind, truth, duration, rng)
            ours = temporal_iou(pred, truth)
            for name, official in lmms_eval_ious().items():
                assert ours == official(truth, pred) == official(pred, truth), (name, kind, truth, pred)
            assert ours == max(eval_ground_tiou(truth, pred)[0], 0.0), (kind, truth, pred)


@pytest.mark.parametrize("name, fmt", [("rlt_charades_sta", "records"), ("rlt_activitynet_tvg", "activitynet")])
def test_grounding_tasks_equal_the_official_metrics(name, fmt, tmp_path):
    records, annotations = [], {}
    for k, (truth, duration) in enumerate(grounding_truths(660, seed=2)):
        video = f"v{k}"
        records.append({"id": f"g/{video}#0", "task": "tvg", "video": f"{video}.mp4", "question": f"event {k}",
                        "span": list(truth), "duration": duration, "source": "generated"})  # fmt: skip
        annotations[video] = {"duration": duration, "timestamps": [list(truth)], "sentences": [f"event {k}"]}
    path = tmp_path / ("records.jsonl" if fmt == "records" else "val.json")
    path.write_text("".join(json.dumps(r) + "\n" for r in records) if fmt == "records" else json.dumps(annotations))
    env = name.upper()
    [task] = load_tasks([name], {f"{env}_ANNOTATIONS": str(path), f"{env}_FORMAT": fmt}).values()
    docs = docs_of(task)
    assert [d["span"] for d in docs] == [r["span"] for r in records]  # as annotated: -0.2 s starts kept

    rng = random.Random(3)
    pairs, official = [], []
    for k, doc in enumerate(docs):
        kind = SPAN_KINDS[k % len(SPAN_KINDS)]
        pred = predicted_span(kind, tuple(doc["span"]), doc["duration"], rng)
        pairs.append((doc, f"<think>t</think><answer>{stated(pred, k // len(SPAN_KINDS))}</answer>"))
        official.append(official_grounding_row(tuple(doc["span"]), pred))
    compare(task, pairs, official)
    assert_reward_iou_is_the_metric_iou(task, pairs)


def test_mvbench_equals_the_official_accuracy(tmp_path):
    subtasks = sorted(p.stem.removeprefix("rlt_mvbench_") for p in (TASKS_DIR / "mvbench").glob("rlt_mvbench_*.yaml"))
    rng = random.Random(4)
    config = {"datasets": []}
    for k, subtask in enumerate(subtasks):
        items = [{"video": f"{subtask}{i}.mp4", "question": f"q{i}", "candidates": ["red", "green", "blue", "cyan"],
                  "answer": rng.choice(["red", "green", "blue", "cyan"])} for i in range(5 + k)]  # fmt: skip
        (tmp_path / f"{subtask}.json").write_text(json.dumps(items))
        config["datasets"].append({"path": f"{subtask}.json", "format": "mvbench"})
    (tmp_path / "mvbench.yaml").write_text(yaml.safe_dump(config))
    tasks = load_tasks(
        [f"rlt_mvbench_{s}" for s in subtasks], {"RLT_MVBENCH_ANNOTATIONS": str(tmp_path / "mvbench.yaml")}
    )

    accuracies, sizes, every_answer = [], [], []
    for _, task in sorted(tasks.items()):
        pairs, official = [], []
        for i, doc in enumerate(docs_of(task)):
            choice = [doc["answer"], "D" if doc["answer"] != "D" else "A", None][i % 3]  # right, wrong, none
            pairs.append((doc, f"<think>t</think><answer>{f'({choice})' if choice else 'not sure'}</answer>"))
            official.append({"accuracy": 100.0 * (choice == doc["answer"])})
        compare(task, pairs, official)
        accuracies.append(task.aggregation()["accuracy"]([task.process_results(d, [r])["accuracy"] for d, r in pairs]))
        sizes.append(len(pairs))
        every_answer += official
    # The group's overall accuracy: lmms-eval's size-weighted mean, as the group YAML asks, equals
    # MVBench's right / all over every subtask.
    from lmms_eval.api.metrics import aggregate_subtask_metrics

    group = yaml.safe_load((TASKS_DIR / "mvbench" / "rlt_mvbench.yaml").read_text())
    accuracy = next(m for m in group["aggregate_metric_list"] if m["metric"] == "accuracy")
    assert accuracy["weight_by_size"] is True
    overall = aggregate_subtask_metrics(accuracies, sizes, weight_by_size=True)
    assert abs(overall - mean(every_answer, "accuracy")) < TOLERANCE


# ---------------------------------------------------------------- NExT-GQA, on its official annotation files
@pytest.fixture(scope="module")
def nextgqa_dir() -> Path:
    if not (NEXTGQA / "test.csv").is_file():
        pytest.skip(f"needs NExT-GQA's official annotations in {NEXTGQA} (val.csv, test.csv, gsub_*.json)")
    return NEXTGQA


def official_questions(folder: Path, split: str) -> dict:
    """{(video, qid): (segments, options, answer index)} straight from the raw files."""
    gsub = json.loads((folder / f"gsub_{split}.json").read_text())
    with open(folder / f"{split}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    questions = {}
    for row in rows:
        options = [row[f"a{i}"].strip() for i in range(5)]
        segments = gsub[row["video_id"]]["location"][row["qid"]]
        questions[(row["video_id"], row["qid"])] = (segments, options, options.index(row["answer"].strip()))
    return questions


@pytest.mark.parametrize("split", list(SPLITS))
def test_nextgqa_splits_convert_strictly_and_whole(nextgqa_dir, split, tmp_path, capsys):
    out = tmp_path / f"{split}.jsonl"
    assert data_main(["convert", str(nextgqa_dir / f"{split}.csv"), "--format", "nextgqa", "-o", str(out)]) == 0
    assert f"wrote {SPLITS[split]} records" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    official = official_questions(nextgqa_dir, split)
    assert len(records) == len(official) == SPLITS[split]
    # Every segment as annotated: test's 36 starts below 0 and val's ends past the duration kept.
    for record in records:
        vid, qid = record["id"].removeprefix("nextgqa/").split("#")
        assert record["segments"] == sorted(official[vid, qid][0])
    below_zero = sum(s < 0 for r in records for s, _ in r["segments"])
    assert below_zero == {"val": 0, "test": 36}[split]


@pytest.mark.parametrize("split", list(SPLITS))
def test_nextgqa_equals_eval_ground_on_the_official_split(nextgqa_dir, split):
    [task] = load_tasks(["rlt_nextgqa"], {"RLT_NEXTGQA_ANNOTATIONS": str(nextgqa_dir / f"{split}.csv")}).values()
    docs = docs_of(task)
    official = official_questions(nextgqa_dir, split)
    assert len(docs) == SPLITS[split]

    rng = random.Random(5)
    pairs, rows = [], []
    for k, doc in enumerate(docs):
        segments, _, answer = official[tuple(doc["id"].removeprefix("nextgqa/").split("#"))]
        truth = segments[k % len(segments)]  # spans aimed at each segment in turn
        pred = predicted_span(SPAN_KINDS[k % len(SPAN_KINDS)], truth, doc["duration"], rng)
        choice = [answer, (answer + 1 + k % 4) % 5, None][(k // len(SPAN_KINDS)) % 3]  # right, wrong, none
        said = {"choice": chr(ord("A") + choice)} if choice is not None else {}
        if pred is not None:
            said.update(start_time=pred[0], end_time=pred[1])
        pairs.append((doc, f"<think>t</think><answer>{json.dumps(said) if said else 'no idea'}</answer>"))
        rows.append(eval_ground_question(segments, pred, right=choice == answer))  # by index, as NExT-QA scores
    compare(task, pairs, rows)
    assert_reward_iou_is_the_metric_iou(task, pairs)
