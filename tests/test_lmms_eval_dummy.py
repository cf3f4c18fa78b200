"""`openrlhf-video eval` through lmms-eval's real evaluator with `--model dummy`, which answers
every request with one fixed text: every metric of every rlt_ task is then known exactly.

The local data use three of our converters' formats (records JSONL, ActivityNet Captions JSON,
MVBench JSON through a data config), with a duplicated query and a missing video.
"""

import glob
import json
import time
from pathlib import Path

import pytest
import yaml

from openrlhf_video import evaluate

RESPONSE = "<think>x</think><answer>(B) 2.0 to 6.0</answer>"  # option B, span [2, 6]
PREDICTED = (2.0, 6.0)


def iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def mean(values):
    return 100.0 * sum(values) / len(values)


@pytest.fixture(scope="module")
def local_data(synthetic_data, tmp_path_factory):
    """Write the four tasks' local annotations; return (env vars, records per task)."""
    out = tmp_path_factory.mktemp("lmms_local")
    records = [json.loads(line) for line in (synthetic_data / "records.jsonl").read_text().splitlines()]
    by_task = {task: [r for r in records if r["task"] == task] for task in ("tvg", "mcq", "gqa")}
    videos = synthetic_data / "videos"

    # Charades-STA as records: a query asked twice counts twice; a missing video is a counted miss.
    charades = by_task["tvg"] + [by_task["tvg"][0], {**by_task["tvg"][1], "id": "gone#0", "video": "videos/gone.mp4"}]
    (out / "charades.jsonl").write_text("".join(json.dumps(r) + "\n" for r in charades))
    # ActivityNet Captions' own layout: {video id: {duration, timestamps, sentences}}.
    activitynet = {Path(r["video"]).stem: {"duration": r["duration"], "timestamps": [r["span"]], "sentences": [r["question"]]}
                   for r in by_task["tvg"]}  # fmt: skip
    (out / "activitynet.json").write_text(json.dumps(activitynet))
    # MVBench's own layout, one JSON per subtask (named by the subtask), listed in a data config.
    subtasks = [
        p.stem.removeprefix("rlt_mvbench_")
        for p in Path(evaluate.lmms_tasks.TASKS_DIR, "mvbench").glob("rlt_mvbench_*.yaml")
    ]
    # One question per subtask, but three in the first (one answered right by the dummy's B): the
    # overall accuracy is question-weighted, which only differs from a mean of subtasks this way.
    mvbench = {subtask: [by_task["mcq"][k % len(by_task["mcq"])]] for k, subtask in enumerate(sorted(subtasks))}
    mcq = by_task["mcq"]
    mvbench[min(subtasks)] = [next(r for r in mcq if r["answer"] == "B"), *[r for r in mcq if r["answer"] != "B"][:2]]
    for subtask, rs in mvbench.items():
        items = [{"video": Path(r["video"]).name, "question": r["question"], "candidates": r["options"],
                  "answer": r["options"][ord(r["answer"]) - ord("A")]} for r in rs]  # fmt: skip
        (out / f"{subtask}.json").write_text(json.dumps(items))
    config = {"datasets": [{"path": f"{s}.json", "format": "mvbench", "video_root": str(videos)} for s in subtasks]}
    (out / "mvbench.yaml").write_text(yaml.safe_dump(config))

    env = {
        "RLT_CHARADES_STA_ANNOTATIONS": str(out / "charades.jsonl"),
        "RLT_CHARADES_STA_VIDEO_ROOT": str(synthetic_data),
        "RLT_ACTIVITYNET_TVG_ANNOTATIONS": str(out / "activitynet.json"),
        "RLT_ACTIVITYNET_TVG_VIDEO_ROOT": str(videos),
        "RLT_MVBENCH_ANNOTATIONS": str(out / "mvbench.yaml"),
        "RLT_NEXTGQA_ANNOTATIONS": str(synthetic_data / "records.jsonl"),  # video paths relative to it
    }
    return env, {"charades": charades, "activitynet": by_task["tvg"], "mvbench": mvbench, "nextgqa": by_task["gqa"]}


@pytest.fixture(scope="module")
def dummy_run(local_data, tmp_path_factory):
    env, records = local_data
    out = tmp_path_factory.mktemp("lmms_out")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        code = evaluate.main(["--model", "dummy", "--model_args", f"response={RESPONSE}", "--tasks", "rlt_video",
                              "--output_path", str(out), "--log_samples"])  # fmt: skip
    results = json.loads(Path(glob.glob(f"{out}/**/*_results.json", recursive=True)[0]).read_text())
    return code, out, results, records


def test_exit_code_and_sample_counts(dummy_run):
    code, _, results, records = dummy_run
    assert code == 0
    counts = {task: n["effective"] for task, n in results["n-samples"].items()}
    assert counts["rlt_charades_sta"] == len(records["charades"]) == 10  # duplicate and missing included
    assert counts["rlt_activitynet_tvg"] == 8 and counts["rlt_nextgqa"] == 8
    assert {t for t in counts if t.startswith("rlt_mvbench_")} == {f"rlt_mvbench_{s}" for s in records["mvbench"]}


def test_grounding_metrics_exact(dummy_run):
    _, _, results, records = dummy_run
    for task, docs in (("rlt_charades_sta", records["charades"]), ("rlt_activitynet_tvg", records["activitynet"])):
        ious = [0.0 if "gone" in r["video"] else iou(PREDICTED, r["span"]) for r in docs]
        got = results["results"][task]
        assert got["mIoU,none"] == pytest.approx(mean(ious))
        for t in (0.3, 0.5, 0.7):
            assert got[f"R@{t},none"] == pytest.approx(mean([x >= t for x in ious]))
        missing = sum("gone" in r["video"] for r in docs)
        assert got["missing_videos,none"] == missing
        assert got["parse_fail,none"] == pytest.approx(mean([1] * missing + [0] * (len(docs) - missing)))
        assert got["format,none"] == pytest.approx(100.0 - got["parse_fail,none"])
    assert results["results"]["rlt_charades_sta"]["missing_videos,none"] == 1


def test_mvbench_per_subtask_and_overall(dummy_run):
    _, _, results, records = dummy_run
    for subtask, rs in records["mvbench"].items():
        assert results["results"][f"rlt_mvbench_{subtask}"]["accuracy,none"] == pytest.approx(
            mean([r["answer"] == "B" for r in rs])
        )
    overall = mean([r["answer"] == "B" for rs in records["mvbench"].values() for r in rs])  # question-weighted
    per_subtask = [mean([r["answer"] == "B" for r in rs]) for rs in records["mvbench"].values()]
    assert 0 < overall < 100 and overall != pytest.approx(sum(per_subtask) / len(per_subtask))  # the data discriminate
    assert results["results"]["rlt_mvbench"]["accuracy,none"] == pytest.approx(overall)


def test_nextgqa_metrics_exact(dummy_run):
    _, _, results, records = dummy_run
    docs = records["nextgqa"]
    right = [r["answer"] == "B" for r in docs]
    ious = [iou(PREDICTED, r["span"]) for r in docs]
    iops = [max(0.0, min(6.0, r["span"][1]) - max(2.0, r["span"][0])) / 4.0 for r in docs]
    got = results["results"]["rlt_nextgqa"]
    expected = {
        "Acc@QA": mean(right), "Acc@GQA": mean([a and p >= 0.5 for a, p in zip(right, iops)]),
        "mIoP": mean(iops), "IoP@0.3": mean([p >= 0.3 for p in iops]), "IoP@0.5": mean([p >= 0.5 for p in iops]),
        "mIoU": mean(ious), "IoU@0.3": mean([x >= 0.3 for x in ious]), "IoU@0.5": mean([x >= 0.5 for x in ious]),
    }  # fmt: skip
    assert {name: got[f"{name},none"] for name in expected} == pytest.approx(expected)
    assert "rlt_video" in results["results"]


def test_logged_iou_equals_the_training_reward(dummy_run):
    """The metric's IoU for a logged response is what OpenRLHF's reward file gives that response."""
    from reward_plugins.openrlhf_reward import reward_func

    _, out, _, _ = dummy_run
    samples = [
        json.loads(line)
        for line in Path(glob.glob(f"{out}/**/*_samples_rlt_charades_sta.jsonl", recursive=True)[0])
        .read_text()
        .splitlines()
    ]
    prompt = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    checked = 0
    for sample in samples:
        if sample["missing_videos"]:
            continue
        label = {"task": "tvg", "span": json.loads(sample["target"])["span"], "duration": None}
        reward = reward_func([prompt + sample["filtered_resps"] + "<|im_end|>"], [prompt], [json.dumps(label)])
        assert sample["mIoU"] == pytest.approx(100 * reward["extra_logs"]["iou"].item(), abs=1e-4)
        checked += 1
    assert checked == 9


def test_check_results_names_what_is_missing(dummy_run, tmp_path):
    _, out, _, _ = dummy_run
    assert evaluate.check_results(out, ["rlt_video"], since=0) == []
    assert evaluate.check_results(out, ["rlt_video", "rlt_nosuch"], since=0) == ["no results for task 'rlt_nosuch'"]
    assert "no results file" in evaluate.check_results(tmp_path, ["rlt_video"], since=0)[0]
    # a results file from an earlier run does not count for this one
    assert "no results file" in evaluate.check_results(out, ["rlt_video"], since=time.time() + 1)[0]


def test_runs_of_our_tasks_skip_indexing_lmms_evals_own(monkeypatch, tmp_path):
    """patches.lmms_eval_index_included_tasks_only: the TaskManager sees our folder only, and
    `eval` uses it just when every task is ours (the dummy run above went through it)."""
    from lmms_eval.tasks import TaskManager

    from openrlhf_video import patches

    monkeypatch.setattr(TaskManager, "__init__", TaskManager.__init__)  # put back afterwards
    monkeypatch.setattr(patches, "UPSTREAM", dict(patches.UPSTREAM))
    patches.lmms_eval_index_included_tasks_only()
    tasks = TaskManager(include_path=str(evaluate.lmms_tasks.TASKS_DIR)).all_tasks
    assert "rlt_video" in tasks and all(name.startswith("rlt_") for name in tasks)  # no "mme" and the like
    assert set(tasks) == set(evaluate.our_tasks())  # what `eval` checks task names against

    commands = []
    monkeypatch.setattr(evaluate.subprocess, "call", lambda command: commands.append(command) or 1)
    for names in ("rlt_charades_sta,rlt_mvbench", "rlt_charades_sta,mme"):
        evaluate.main(["--model", "dummy", "--tasks", names, "--output_path", str(tmp_path)])
    assert "lmms_eval_index_included_tasks_only" in commands[0][2] and "lmms_eval_index" not in commands[1][2]


def test_lmms_evals_process_generates_with_the_positions_the_model_was_trained_with(monkeypatch, tmp_path):
    """lmms-eval's qwen2_5_vl backend runs transformers' generate, whose 5.x get_rope_index gives
    the text after a video other positions than training (docs/upstream/): eval's process puts
    them right, whatever the tasks."""
    import lmms_eval.__main__
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    from openrlhf_video import patches

    monkeypatch.setattr(Qwen2_5_VLModel, "get_rope_index", Qwen2_5_VLModel.get_rope_index)  # put back afterwards
    monkeypatch.setattr(patches, "UPSTREAM", dict(patches.UPSTREAM))
    commands = []
    monkeypatch.setattr(evaluate.subprocess, "call", lambda command: commands.append(command) or 1)
    evaluate.main(["--model", "dummy", "--tasks", "rlt_charades_sta,mme", "--output_path", str(tmp_path)])
    ran = []
    monkeypatch.setattr(lmms_eval.__main__, "cli_evaluate", lambda: ran.append(Qwen2_5_VLModel.get_rope_index))
    exec(commands[0][2], {})  # what `python -c` runs in lmms-eval's process
    assert ran == [patches.qwen25vl_get_rope_index]


def test_a_task_name_typo_or_an_unwritable_output_fails_before_lmms_eval_starts(monkeypatch, capsys):
    monkeypatch.setattr(evaluate.subprocess, "call", lambda command: pytest.fail(f"lmms-eval started: {command}"))
    assert evaluate.main(["--model", "dummy", "--tasks", "rlt_charades,mme", "--output_path", "/tmp"]) == 2
    assert "unknown task rlt_charades; ours: rlt_activitynet_tvg, rlt_charades_sta," in capsys.readouterr().err
    assert evaluate.main(["--model", "dummy", "--tasks", "rlt_charades_sta", "--output_path", "/proc/no/such"]) == 2
    assert "--output_path /proc/no/such is not a writable directory" in capsys.readouterr().err
    assert evaluate.main(["--config", "eval.yaml"]) == 2  # lmms-eval's YAML would hide the tasks from our check
    assert "instead of --config" in capsys.readouterr().err


def test_a_hub_dataset_that_cannot_load_says_how_to_use_local_files(monkeypatch):
    """Offline clusters: without RLT_<TASK>_ANNOTATIONS the task falls back to lmms-eval's hub
    download; when that fails, the error names the variable to set instead of a bare hub error."""
    import tenacity
    from huggingface_hub.errors import LocalEntryNotFoundError
    from lmms_eval.api.task import ConfigurableTask
    from lmms_eval.tasks import TaskManager

    @tenacity.retry(stop=tenacity.stop_after_attempt(2))  # as lmms-eval's own download is wrapped
    def offline(self, dataset_kwargs=None):
        raise LocalEntryNotFoundError("no connection and no cached copy")

    monkeypatch.delenv("RLT_CHARADES_STA_ANNOTATIONS", raising=False)
    monkeypatch.setattr(ConfigurableTask, "download", offline)
    manager = TaskManager(include_path=str(evaluate.lmms_tasks.TASKS_DIR), include_defaults=False)
    with pytest.raises(ValueError, match="rlt_charades_sta: cannot load the hub dataset .*LocalEntryNotFoundError: no connection.*"
                                         "set RLT_CHARADES_STA_ANNOTATIONS"):  # fmt: skip
        manager.load_task_or_group(["rlt_charades_sta"])


def test_a_doc_is_scored_as_training_scores_it_on_the_annotation_as_given(monkeypatch, tmp_path):
    """Charades-STA's text release has no durations, and its ends may pass the video's: the doc keeps
    the annotation as given (no duration read, no clamp), as the training label does, and a span
    past the video's end is scored as stated."""
    from lmms_eval.tasks import TaskManager

    from lmms_tasks.task import score_doc
    from openrlhf_video.data import label_json
    from openrlhf_video.synthetic import make_video
    from reward_plugins import score

    make_video(tmp_path / "VID01.mp4", duration=8.0, event=(5.0, 8.0))
    (tmp_path / "charades_sta_test.txt").write_text("VID01 5.0 8.4##person opens the door.\n")  # 0.4 s past the end
    monkeypatch.setenv("RLT_CHARADES_STA_ANNOTATIONS", str(tmp_path / "charades_sta_test.txt"))
    manager = TaskManager(include_path=str(evaluate.lmms_tasks.TASKS_DIR), include_defaults=False)
    task = manager.load_task_or_group(["rlt_charades_sta"])["rlt_charades_sta"]
    [doc] = task.dataset["test"]
    assert doc["duration"] is None and doc["span"] == [5.0, 8.4]

    response = '<think>t</think><answer>{"start_time": 5.0, "end_time": 12.0}</answer>'
    record = {k: v for k, v in doc.items() if k != "video_found"}
    assert score_doc(doc, [response])["iou"] == score(response, label_json(record))["iou"] == pytest.approx(3.4 / 7)
