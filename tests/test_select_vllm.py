"""`openrlhf-video select` end to end on vLLM's CPU build: the tiny model, synthetic videos,
one unreadable video (counted, never kept), and a rerun that resumes with nothing to do."""

import json
import os
import subprocess
import sys
from pathlib import Path

from openrlhf_video.data import load_config

REPO = Path(__file__).resolve().parents[1]


def test_select_cli_with_vllm_cpu(tiny_model_dir, synthetic_data, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(4096))
    record = {"id": "broken#mcq", "task": "mcq", "video": str(broken), "question": "Which colour?",
              "options": ["red", "blue"], "answer": "A", "duration": 8.0, "source": "broken"}  # fmt: skip
    (tmp_path / "broken.jsonl").write_text(json.dumps(record) + "\n")
    data = tmp_path / "data.yaml"
    data.write_text(
        f"datasets:\n  - path: {synthetic_data / 'records.jsonl'}\n    video_root: {synthetic_data}\n    sample: 3\n"
        "  - path: broken.jsonl\n"
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "openrlhf_video", "select", "--data", str(data), "--policy", str(tiny_model_dir),
           "--out", str(out), "--k", "4", "--max-new-tokens", "16", "--max-len", "2048", "--fps", "1.0",
           "--total-pixels", str(64 * 28 * 28 * 4)]  # fmt: skip
    run = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "select: 100%" in run.stderr and "broken#mcq has no rollouts" in run.stderr

    stats = {json.loads(line)["id"]: json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()}
    records = load_config(data)
    assert sorted(stats) == sorted(r["id"] for r in records) and len(stats) == 4
    assert stats["broken#mcq"]["k"] == 0 and str(broken) in stats["broken#mcq"]["error"]
    for record_id, s in stats.items():
        if record_id != "broken#mcq":
            assert s["k"] == 4 and len(s["rewards"]) == 4 and all(0.0 <= r <= 1.0 for r in s["rewards"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 4 and summary["failed"] == 1
    assert summary["kept_per_group"]["source:broken"] == "0/1"
    assert {r["id"] for r in load_config(out / "kept.yaml")} <= set(stats) - {"broken#mcq"}
    assert (out / "spread_hist.png").read_bytes()[:4] == b"\x89PNG"

    before = (out / "stats.jsonl").read_text()
    rerun = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (out / "stats.jsonl").read_text() == before  # all done: nothing rolled out twice
    assert "LLM engine" not in rerun.stderr  # and no engine started
