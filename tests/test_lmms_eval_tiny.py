"""The tiny offline Qwen2.5-VL through lmms-eval's real evaluator and its qwen2_5_vl chat class,
on synthetic videos, in no-think mode; and a failed run that lmms-eval itself would call a success."""

import glob
import json

import pytest

from openrlhf_video import evaluate
from reward_plugins import score


def test_tiny_model_run_scores_every_response_with_the_reward(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRLHF_VIDEO_THINK", "0")
    for env in ("RLT_CHARADES_STA", "RLT_NEXTGQA"):
        monkeypatch.setenv(f"{env}_ANNOTATIONS", str(synthetic_data / "records.jsonl"))
    model_args = (
        f"pretrained={tiny_model_dir},device=cpu,device_map=cpu,max_num_frames=8,min_pixels=3136,max_pixels=12544"
    )
    code = evaluate.main(["--model", "qwen2_5_vl", "--model_args", model_args, "--gen_kwargs", "max_new_tokens=24",
                          "--tasks", "rlt_charades_sta,rlt_nextgqa", "--output_path", str(tmp_path), "--log_samples"])  # fmt: skip
    assert code == 0
    results = json.loads(open(glob.glob(f"{tmp_path}/**/*_results.json", recursive=True)[0]).read())
    assert {t: n["effective"] for t, n in results["n-samples"].items()} == {"rlt_charades_sta": 8, "rlt_nextgqa": 8}
    records = [json.loads(line) for line in (synthetic_data / "records.jsonl").read_text().splitlines()]
    for task, kind, metric, component in (
        ("rlt_charades_sta", "tvg", "mIoU", "iou"),
        ("rlt_nextgqa", "gqa", "Acc@QA", "accuracy"),
    ):
        docs = [r for r in records if r["task"] == kind]  # the task's docs, in file order
        samples = [
            json.loads(line) for line in open(glob.glob(f"{tmp_path}/**/*_samples_{task}.jsonl", recursive=True)[0])
        ]
        assert len(samples) == 8 and any(s["filtered_resps"].strip() for s in samples)  # the model did answer
        for sample in samples:
            record = docs[sample["doc_id"]]
            label = {key: record[key] for key in ("task", "answer", "options", "span", "duration")}
            scored = score(sample["filtered_resps"], label, think=False)
            assert sample[metric] == pytest.approx(100 * scored[component])
            assert sample["format"] == 100 * scored["format"]


def test_failure_exits_nonzero_although_lmms_eval_exits_zero(monkeypatch, capfd, tmp_path):
    # Annotations that load (eval's own checks pass) but hold no grounding record: the task fails
    # inside lmms-eval, which logs the error and exits 0.
    only_mcq = {"id": "m#0", "task": "mcq", "video": "m.mp4", "question": "q", "options": ["a", "b"], "answer": "A"}
    (tmp_path / "mcq.jsonl").write_text(json.dumps(only_mcq) + "\n")
    monkeypatch.setenv("RLT_CHARADES_STA_ANNOTATIONS", str(tmp_path / "mcq.jsonl"))
    assert evaluate.main(["--model", "dummy", "--tasks", "rlt_charades_sta"]) == 1
    captured = capfd.readouterr()
    assert "no tvg records" in captured.out + captured.err
    assert "FAILED: no results file" in captured.err
