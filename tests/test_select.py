"""`openrlhf-video select`: keep rules against hand-computed stats, the --rollouts path and its
outputs, resuming after a torn line and after a real SIGKILL, and the Ray engine arguments."""

import gc
import inspect
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrlhf_video import select
from openrlhf_video.data import DataError, load_config

REPO = Path(__file__).resolve().parents[1]


def _record(id, task, **fields):
    base = {"id": id, "task": task, "video": f"{id}.mp4", "question": "q", "options": None, "answer": None,
            "span": None, "duration": 10.0, "clip": None, "source": fields.pop("source", "unit")}  # fmt: skip
    return {**base, **fields}


def _span(start, end, think=True):
    body = json.dumps({"start_time": start, "end_time": end})
    return f"<think>t</think><answer>{body}</answer>" if think else f"<answer>{body}</answer>"


OPTIONS = ["red", "green", "blue", "cyan"]
# Hand-made rollouts, with the stats they must give (IoU against span [2, 6]; sample std, ddof=1).
CASES = {
    # IoUs 1, 0.5, 0, 0.5: mean 0.5, std sqrt(0.5 / 3) = 0.4082 -> kept (>= 0.1)
    "tvg_spread": (
        _record("tvg_spread", "tvg", span=[2, 6]),
        [_span(2, 6), _span(2, 4), _span(7, 9), _span(4, 6)],
        {"iou_mean": 0.5, "iou_std": math.sqrt(0.5 / 3)},
    ),
    # IoU 0.5 every time, only the format varies: rewards 0.75/0.25 vary, but there is no
    # grounding signal -> dropped
    "tvg_format_only": (
        _record("tvg_format_only", "tvg", span=[2, 6]),
        [_span(2, 4), _span(2, 4, think=False), _span(4, 6), _span(4, 6, think=False)],
        {"iou_mean": 0.5, "iou_std": 0.0, "reward_std": math.sqrt(4 * 0.25**2 / 3)},
    ),
    # IoUs 0.5, 0.5, 0.5, 0.25 -> std 0.125 -> kept at 0.1, dropped at tvg=0.2
    "tvg_small": (
        _record("tvg_small", "tvg", span=[2, 6]),
        [_span(2, 4), _span(4, 6), _span(2, 4), _span(2, 3)],
        {"iou_mean": 0.4375, "iou_std": 0.125},
    ),
    "mcq_all_right": (
        _record("mcq_all_right", "mcq", options=OPTIONS, answer="B", source="other"),
        ["<think>x</think><answer>B</answer>"] * 4,
        {"accuracy_mean": 1.0, "accuracy_std": 0.0},
    ),
    "mcq_mixed": (
        _record("mcq_mixed", "mcq", options=OPTIONS, answer="B", source="other"),
        [
            "<think>x</think><answer>B</answer>",
            "<answer>A</answer>",
            "<think>x</think><answer>C</answer>",
            "<think>x</think><answer>B</answer>",
        ],
        {"accuracy_mean": 0.5, "accuracy_std": math.sqrt(1 / 3)},
    ),
    "oeqa_all_wrong": (
        _record("oeqa_all_wrong", "oeqa", answer="red"),
        ["<answer>blue</answer>", "<answer>green</answer>"] * 2,
        {"accuracy_mean": 0.0, "accuracy_std": 0.0},
    ),
    # grounded QA: always the right option (no discrete signal) but the IoU varies -> kept through IoU
    "gqa_iou": (
        _record("gqa_iou", "gqa", options=OPTIONS, answer="A", span=[2, 6]),
        [
            f'<answer>{{"choice": "A", "start_time": {s}, "end_time": {e}}}</answer>'
            for s, e in [(2, 6), (2, 6), (7, 9), (7, 9)]
        ],
        {"accuracy_mean": 1.0, "iou_mean": 0.5, "iou_std": math.sqrt(1 / 3)},
    ),
    # grounded QA the other way round: the IoU is the same every time, the answer varies -> kept through accuracy
    "gqa_answer": (
        _record("gqa_answer", "gqa", options=OPTIONS, answer="A", span=[2, 6]),
        [f'<answer>{{"choice": "{c}", "start_time": 2, "end_time": 4}}</answer>' for c in "ABAB"],
        {"accuracy_mean": 0.5, "iou_mean": 0.5, "iou_std": 0.0},
    ),
}
KEPT_AT_DEFAULT = {"tvg_spread", "tvg_small", "mcq_mixed", "gqa_iou", "gqa_answer"}


def test_record_stats_match_hand_computed_values():
    for name, (record, responses, expected) in CASES.items():
        stats = select.record_stats(record, responses)
        assert stats["id"] == name and stats["k"] == len(responses) and len(stats["rewards"]) == len(responses)
        for key, value in expected.items():
            assert stats[key] == pytest.approx(value), (name, key)


def test_keep_rules_per_task_thresholds_and_budget():
    stats = [select.record_stats(record, responses) for record, responses, _ in CASES.values()]
    assert select.choose(stats, select.parse_thresholds([])) == KEPT_AT_DEFAULT
    assert select.choose(stats, select.parse_thresholds(["tvg=0.2"])) == KEPT_AT_DEFAULT - {"tvg_small"}
    assert select.choose(stats, select.parse_thresholds(["0.5"])) == {
        "mcq_mixed",
        "gqa_iou",
        "gqa_answer",
    }  # IoU std 0.577; discrete
    assert select.choose(stats, select.parse_thresholds(["0.5", "gqa=0.6"])) == {"mcq_mixed", "gqa_answer"}
    # budget: highest spread first (gqa 0.577 = mcq 0.577 > tvg_spread 0.408 > tvg_small 0.125), ties by id
    assert select.choose(stats, select.parse_thresholds([]), budget=4) == {
        "gqa_answer",
        "gqa_iou",
        "mcq_mixed",
        "tvg_spread",
    }
    assert select.choose(stats, select.parse_thresholds([]), budget=1) == {"gqa_answer"}


@pytest.mark.parametrize("bad", ["mcq=0.1", "nope=0.1", "tvg=x", "abc", "nan", "tvg=-0.1"])
def test_bad_threshold_is_named(bad):
    with pytest.raises(DataError, match="--std-threshold"):
        select.parse_thresholds([bad])


def _write_inputs(tmp_path, records, rollouts):
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "data.yaml").write_text("datasets:\n  - path: records.jsonl\n    format: records\n")
    with open(tmp_path / "rollouts.jsonl", "w") as f:
        for record_id, responses in rollouts.items():
            f.writelines(json.dumps({"id": record_id, "response": r}) + "\n" for r in responses)
    return tmp_path / "data.yaml", tmp_path / "rollouts.jsonl"


def test_rollouts_mode_writes_every_output_and_reselects_without_rollouts(tmp_path, capsys, request):
    data, rollouts = _write_inputs(tmp_path, [c[0] for c in CASES.values()], {k: c[1] for k, c in CASES.items()})
    out = tmp_path / "out"
    # A run lets go of the output's lock on return, not whenever the garbage collector comes by
    # (it sat in a reference cycle, and the second run below was refused now and then).
    gc.disable()
    request.addfinalizer(gc.enable)
    assert select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(out)]) == 0

    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert sorted(s["id"] for s in stats) == sorted(CASES)
    kept = load_config(out / "kept.yaml")  # the data config is ready for training
    assert {r["id"] for r in kept} == KEPT_AT_DEFAULT
    original = CASES[kept[0]["id"]][0]  # the records themselves, videos made absolute (kept.yaml works from anywhere)
    assert kept[0] == {**original, "video": os.path.abspath(original["video"])} and os.path.isabs(kept[0]["video"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == len(CASES) and summary["kept"] == len(KEPT_AT_DEFAULT) and summary["failed"] == 0
    assert summary["kept_per_group"] == {"source:other": "1/2", "source:unit": "4/6", "task:gqa": "2/2",
                                         "task:mcq": "1/2", "task:oeqa": "0/1", "task:tvg": "2/3"}  # fmt: skip
    assert sum(summary["spread_histogram"]["counts"]) == len(CASES)
    # a sample std reaches 0.577 here (0.707 at K=2): the histogram's range must hold it, not clamp it
    assert summary["reward_std_histogram"]["edges"][-1] == select.MAX_SPREAD
    assert summary["zero_variance_groups"] == 2  # mcq_all_right, oeqa_all_wrong
    png = (out / "spread_hist.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # a new rule on the same stats: no rollouts needed (the rollouts file may even be gone)
    before = (out / "stats.jsonl").read_text()
    rollouts.unlink()
    assert select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(out), "--budget", "1"]) == 0
    assert (out / "stats.jsonl").read_text() == before
    assert [r["id"] for r in load_config(out / "kept.yaml")] == ["gqa_answer"]
    assert "kept 1 of 8" in capsys.readouterr().out


def test_spans_are_scored_as_stated_as_in_training(tmp_path):
    """Selection scores with the training reward: a span past the video's end is not clamped and a
    reversed one scores 0 (the official IoU), with or without a duration in the record."""
    record = _record("as_stated", "tvg", span=[1.0, 3.0], duration=None)
    data, rollouts = _write_inputs(tmp_path, [record], {"as_stated": [_span(1.0, 31.0), _span(3.0, 1.0)]})
    assert select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(tmp_path / "out")]) == 0
    stats = json.loads((tmp_path / "out" / "stats.jsonl").read_text())
    assert stats["iou_mean"] == pytest.approx((2 / 30 + 0) / 2)


def test_a_negative_budget_is_refused(tmp_path, capsys):  # a slice [:-1] would keep all records but one
    data, rollouts = _write_inputs(tmp_path, [c[0] for c in CASES.values()], {k: c[1] for k, c in CASES.items()})
    assert (
        select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(tmp_path / "o"), "--budget", "-1"])
        == 2
    )
    assert "--budget -1: a number of records" in capsys.readouterr().err


def test_rollouts_file_problems_are_named(tmp_path, capsys):
    records = [c[0] for c in CASES.values()]
    data, rollouts = _write_inputs(tmp_path, records, {k: c[1] for k, c in CASES.items()})
    with open(rollouts, "a") as f:
        f.write('{"id": "mcq_mixed"}\n')
    assert select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(tmp_path / "a")]) == 2
    assert f"{rollouts}:{len(rollouts.read_text().splitlines())}" in capsys.readouterr().err

    data, rollouts = _write_inputs(tmp_path, records, {k: c[1] for k, c in CASES.items() if k != "gqa_iou"})
    assert select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(tmp_path / "b")]) == 2
    assert "'gqa_iou' has 0 responses" in capsys.readouterr().err
    uneven = {k: c[1] for k, c in CASES.items()} | {
        "mcq_mixed": CASES["mcq_mixed"][1][:2]
    }  # K=2 among K=4: stats unlike
    data, rollouts = _write_inputs(tmp_path, records, uneven)
    assert select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(tmp_path / "c")]) == 2
    assert (
        "'mcq_mixed' has 2 responses; selection needs at least 2, and the same number for every record (most have 4)"
        in capsys.readouterr().err
    )
    data, rollouts = _write_inputs(tmp_path, records, {k: c[1] for k, c in CASES.items()})
    for flag, value in (("--max-new-tokens", "0"), ("--temperature", "-1"), ("--batch-size", "0")):
        assert (
            select.main(["--data", str(data), "--rollouts", str(rollouts), "--out", str(tmp_path / "d"), flag, value])
            == 2
        )
        assert f"{flag} {value}" in capsys.readouterr().err


def test_resume_after_a_torn_last_line_loses_and_duplicates_nothing(tmp_path):
    data, rollouts = _write_inputs(tmp_path, [c[0] for c in CASES.values()], {k: c[1] for k, c in CASES.items()})
    argv = ["--data", str(data), "--rollouts", str(rollouts), "--out", str(tmp_path / "out")]
    assert select.main(argv) == 0
    stats_path = tmp_path / "out" / "stats.jsonl"
    complete = stats_path.read_text()
    lines = complete.splitlines(keepends=True)
    stats_path.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # killed while writing line 4
    assert select.main(argv) == 0
    assert sorted(stats_path.read_text().splitlines()) == sorted(complete.splitlines())


def test_sigkill_mid_run_then_resume(tmp_path):
    """A real `openrlhf-video select` process is SIGKILLed while it appends; the rerun completes
    the set: every record exactly once, with the stats an uninterrupted scoring gives."""
    n = 20000
    records = [_record(f"r{i:05d}", "tvg", span=[2, 6]) for i in range(n)]
    rollouts = {
        r["id"]: [_span(2, 6), _span(2, 4), _span(i % 7, i % 7 + 2), "no answer"] for i, r in enumerate(records)
    }
    data, rollouts_path = _write_inputs(tmp_path, records, rollouts)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "openrlhf_video",
        "select",
        "--data",
        str(data),
        "--rollouts",
        str(rollouts_path),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats_path = out / "stats.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if stats_path.exists() and stats_path.stat().st_size > 300_000:  # ~1000 of 20000 lines
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    written_before = stats_path.read_bytes().count(b"\n")
    assert 0 < written_before < n

    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    lines = stats_path.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == n and set(ids) == set(rollouts)
    by_id = {json.loads(line)["id"]: json.loads(line) for line in lines}
    for i in (0, written_before - 1, written_before, n - 1):  # both sides of the kill
        record = records[i]
        assert by_id[record["id"]] == select.record_stats(record, rollouts[record["id"]])
    assert json.loads((out / "summary.json").read_text())["records"] == n


def test_ray_engine_arguments_fit_openrlhf(tmp_path):
    """The GPU path cannot run here; its arguments are checked against OpenRLHF's real signatures,
    and the rollout file it hands the engines loads through OpenRLHF's own loader."""
    from openrlhf.trainer.ray import vllm_engine
    from vllm import SamplingParams

    args = select.build_parser().parse_args(["--data", "d.yaml", "--policy", "/models/qwen", "--out", "o",
                                             "--tensor-parallel-size", "2", "--k", "6", "--fps", "1.5"])  # fmt: skip
    kwargs = select.engine_kwargs(args, cluster_gpus=16.0)
    inspect.signature(vllm_engine.create_vllm_engines).bind(**kwargs)
    assert kwargs["num_engines"] == 8 and kwargs["pretrain"] == "/models/qwen"
    executor = vllm_engine._load_agent_executor(kwargs["agent_func_path"])
    assert type(executor).__name__ == "AgentExecutor"
    with pytest.raises(DataError, match="on a CPU machine use --engine local"):
        select.engine_kwargs(args, cluster_gpus=1.0)

    record = _record("synthetic/x#tvg", "tvg", span=[2, 6], clip=[1, 9])

    class Processor:  # only the chat template is used to build a request
        def apply_chat_template(self, messages, **kwargs):
            return json.dumps(messages)

    request = select.engine_request(record, Processor(), SamplingParams(max_tokens=8), args)
    actor_class = vllm_engine.RolloutRayActor.__ray_metadata__.modified_class
    inspect.signature(actor_class.generate_responses).bind(None, **request)
    assert request["num_samples"] == 6 and request["images"] == {"path": "synthetic/x#tvg.mp4", "clip": [1, 9]}
    assert json.loads(request["label"])["span"] == [1, 6 - 1]  # on the clip's time axis (label_json)
    assert select.rollout_env(args)["OPENRLHF_VIDEO_FPS"] == "1.5"
