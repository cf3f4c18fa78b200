"""GRPO through the demo's own code path makes the tiny model better on held-out clips, and the
video is why (issue #19): `demo --learn` at a test size (32 training and 64 held-out clips, 10
GRPO steps of 8 prompts x 4 samples; ~2 min on 2 cores) must raise held-out colour accuracy by at
least 3 paired standard errors and beat the same policy on shuffled videos by as much.

The test fails on each bug planted by tests/grpo_mutants.py: run it with
OPENRLHF_VIDEO_TEST_MUTANT=negate, zero or misalign (the closing note of #19 lists the results)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The demo's --learn settings, smaller: the same warm start rate, GRPO lr, KL, epochs and group size.
SMALL = ["--videos", "32", "--eval-videos", "64", "--warm-start-steps", "200", "--k", "2", "--steps", "10",
         "--prompts-per-step", "8", "--samples", "4", "--train-batch-size", "8"]  # fmt: skip


def test_grpo_raises_heldout_accuracy_beyond_noise_and_from_the_video(tmp_path):
    mutant = os.environ.get("OPENRLHF_VIDEO_TEST_MUTANT")
    cli = [str(REPO / "tests" / "grpo_mutants.py"), mutant] if mutant else ["-m", "openrlhf_video"]
    run = subprocess.run([sys.executable, *cli, "demo", "--learn", "--out", str(tmp_path), *SMALL],
                         cwd=REPO, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    held = json.loads((tmp_path / "summary.json").read_text())["heldout"]

    assert held["n"] == 64
    gain, video = held["gain"], held["video_effect"]
    report = f"before {held['before']:.3f} after {held['after']:.3f} shuffled {held['after_shuffled']:.3f}"
    assert gain["diff"] > 0 and gain["diff"] >= 3 * gain["se"], f"no held-out gain beyond noise: {report}, {gain}"
    assert video["diff"] > 0 and video["diff"] >= 3 * video["se"], f"the gain is not from the video: {report}, {video}"


def test_the_warm_start_answers_say_nothing_about_the_video():
    """`format_only` answers each true colour's clips with every colour in turn: in the records it
    returns, the answer is independent of the video's colour (no skill to inherit from them)."""
    from collections import Counter

    from openrlhf_video.demo import format_only

    records = [{"id": i, "answer": colour} for i, colour in enumerate(["blue"] * 6 + ["yellow"] * 4 + ["blue"] * 2)]
    answered = format_only(records, ["blue", "yellow"])
    pairs = Counter((r["answer"], a["answer"]) for r, a in zip(records, answered))
    assert pairs == {("blue", "blue"): 4, ("blue", "yellow"): 4, ("yellow", "yellow"): 2, ("yellow", "blue"): 2}
    assert [a["id"] for a in answered] == [r["id"] for r in records] and records[6]["answer"] == "yellow"
