"""`openrlhf-video demo` end to end with small settings: the integration test of the whole
pipeline. The report must hold what the issue asks for, and its numbers must agree with the
files the stages themselves wrote (selection stats, GRPO rollouts, lmms-eval results)."""

import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reward_plugins import score

REPO = Path(__file__).resolve().parents[1]
STAGES = ["data", "data check", "warm start", "selection", "eval before", "GRPO", "eval after", "report"]
# Two clips (8 records) learn the answer format in fewer warm-start steps than the default eight:
# 200 steps gave a format rate of 0.48-0.73 at temperature 1 over four seeds, 120 steps 0.16-0.72.
SMALL = {
    "--videos": 2,
    "--eval-videos": 1,
    "--warm-start-steps": 200,
    "--k": 4,
    "--steps": 2,
    "--prompts-per-step": 2,
    "--samples": 4,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    flags = [str(part) for flag_value in SMALL.items() for part in flag_value]
    command = [sys.executable, "-m", "openrlhf_video", "demo", "--out", str(out), *flags]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=850, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out, run.stdout, json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--samples", 1),
        ("--steps", 0),
        ("--total-pixels", 1000),
        ("--max-new-tokens", 0),
        ("--lr", -0.001),
        ("--warm-start-lr", 0.0),
        ("--train-batch-size", 0),
    ],
)
def test_settings_that_would_fail_late_are_refused_at_once(flag, value, tmp_path, capsys):
    """--samples 1 gave NaN weights (group_norm of one sample), --steps 0 a crash in the final
    table, a small --total-pixels an eval error, --max-new-tokens 0 a vLLM error and a negative
    --lr an AdamW error, --train-batch-size 0 a silent whole-batch step: after minutes of warm start
    and selection."""
    from openrlhf_video import demo

    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path), flag, str(value)])
    err = capsys.readouterr().err
    assert f"{flag} {value}: " in err and ("at least" in err or "positive" in err) and not list(tmp_path.iterdir())


def test_terminal_shows_every_stage_its_time_and_the_final_table(demo):
    _, stdout, _ = demo
    for i, name in enumerate(STAGES, 1):
        assert f"[{i}/{len(STAGES)}] {name}:" in stdout and f"    {name} took " in stdout
    assert "WARM-STARTED" in stdout  # the output says the policy is not the raw tiny model
    table = stdout[stdout.rindex("stage            seconds") :]
    assert all(f"  {name:<14}" in table for name in [*STAGES, "total"]) and "eval (held-out)" in table
    assert "rehearsal" in table and "not a result" in table


def test_summary_is_honest_and_times_every_stage(demo):
    _, _, summary = demo
    assert "rehearsal" in summary["note"] and "toy model" in summary["note"] and "not a result" in summary["note"]
    assert list(summary["stage_seconds"]) == STAGES
    assert all(seconds >= 0 for seconds in summary["stage_seconds"].values())
    assert summary["total_seconds"] >= sum(summary["stage_seconds"].values()) - 1
    assert summary["warm_start"]["steps"] == SMALL["--warm-start-steps"]
    # every stage that has a subcommand ran it, printed so that it can be rerun alone
    # ... with the environment it needs (the held-out records for the eval tasks), rerunnable as is
    commands = [line[line.index("openrlhf-video ") :] for line in summary["commands"]]
    assert [line.split()[1] for line in commands] == ["data", "data", "select", "eval", "eval"]
    assert all(line.startswith("RLT_CHARADES_STA_ANNOTATIONS=") for line in summary["commands"] if " eval " in line)


def test_selection_in_the_summary_is_what_select_wrote(demo):
    out, _, summary = demo
    stats = [json.loads(line) for line in (out / "selection" / "stats.jsonl").read_text().splitlines()]
    kept = (out / "selection" / "kept.jsonl").read_text().splitlines()
    assert len(stats) == summary["selection"]["records"] == 4 * SMALL["--videos"]
    assert all(s["k"] == SMALL["--k"] for s in stats)
    # The warm start taught the answer format, as the demo says (the random model: ~0).
    assert sum(s["format_mean"] for s in stats) / len(stats) >= 0.3
    assert summary["selection"]["kept"] == len(kept)
    expected = len(kept) if len(kept) >= SMALL["--prompts-per-step"] else len(stats)  # documented fallback
    assert summary["selection"]["grpo_records"] == expected


def test_grpo_rewards_are_the_rewards_of_the_logged_rollouts(demo):
    out, _, summary = demo
    rollouts = [json.loads(line) for line in (out / "policy" / "rollouts.jsonl").read_text().splitlines()]
    steps = summary["grpo"]
    assert [m["step"] for m in steps] == list(range(1, SMALL["--steps"] + 1))
    for m in steps:
        mine = [r for r in rollouts if r["step"] == m["step"]]
        assert len(mine) == SMALL["--prompts-per-step"] * SMALL["--samples"]
        # the logged reward is the executor's; the decoded response scores the same again
        assert m["reward"] == pytest.approx(sum(r["reward"] for r in mine) / len(mine))
        for r in mine:
            assert score(r["response"], r["label"])["reward"] == pytest.approx(r["reward"], abs=1e-6)
        for name in ("reward", "format", "iou", "accuracy"):
            assert m[name] is None or 0.0 <= m[name] <= 1.0
        # OpenRLHF's group_norm: groups whose rewards are all equal carry no advantage
        if m["zero_std_groups"] == SMALL["--prompts-per-step"]:
            assert m["policy_loss"] == 0.0 and m["grad_norm"] == 0.0


def test_weights_reach_the_engine_and_the_saved_policy(demo):
    """After each update the new weights are loaded into vLLM: every step's rollout log-probs equal
    the Actor's, updated weights included (and the M-RoPE patches are in force on the Actor side).
    The saved policy differs from the warm start exactly when some step had a gradient."""
    import torch
    from safetensors.torch import load_file

    out, _, summary = demo
    assert any(m["grad_norm"] > 0 for m in summary["grpo"])  # the warm start left groups that vary
    assert all(m["logprob_gap_max"] < 1e-3 for m in summary["grpo"])
    start = load_file(out / "warm_start" / "model.safetensors")
    trained = load_file(out / "policy" / "model.safetensors")
    assert start.keys() == trained.keys()
    changed = any(not torch.equal(start[k], trained[k]) for k in start)
    assert changed == any(m["grad_norm"] > 0 for m in summary["grpo"])


def test_eval_before_and_after_are_lmms_eval_results(demo):
    out, _, summary = demo
    for when in ("before", "after"):
        files = glob.glob(f"{out}/eval/{when}/**/*_results.json", recursive=True)
        assert len(files) == 1
        results = json.loads(Path(files[0]).read_text())
        for task, metrics in summary["eval"][when].items():
            assert results["n-samples"][task]["effective"] == SMALL["--eval-videos"]
            for metric, value in metrics.items():
                assert value == results["results"][task][f"{metric},none"] and 0.0 <= value <= 100.0
        model = results["config"]["model_args"]
        assert f"pretrained={out / ('warm_start' if when == 'before' else 'policy')}," in model


def test_report_png_has_the_four_panels(demo):
    import matplotlib.image

    out, _, _ = demo
    image = matplotlib.image.imread(out / "report.png")
    assert image.shape[:2] == (480, 2000)  # 20 x 4.8 inches at 100 dpi: four panels side by side
    assert image[..., :3].std() > 0.05  # drawn on, not blank


def test_heldout_skill_before_after_and_shuffled_control_are_reported(demo):
    """The held-out colour accuracy (greedy, vLLM) before and after GRPO, the after-GRPO policy on
    videos shuffled between the clips, and paired standard errors, from the per-clip answers."""
    _, stdout, summary = demo
    held = summary["heldout"]
    assert held["n"] == SMALL["--eval-videos"] == len(held["answers"]["after"])
    for when in ("before", "after"):
        assert 0.0 <= held[when] <= 1.0 and held["format"][when] is not None
    assert held["gain"]["diff"] == pytest.approx(held["after"] - held["before"])
    assert held["video_effect"] is None  # one held-out clip: no other video to swap in
    assert "held-out colour accuracy before GRPO" in stdout and "learned from the video" in stdout


def test_the_terminal_shows_the_stages_and_demo_log_everything(demo):
    """DIR/demo.log holds all output (our lines, the subcommands', lmms-eval's child process,
    progress bars as whole lines); the terminal only the demo's own lines, a few dozen."""
    out, stdout, _ = demo
    log = (out / "demo.log").read_text()
    assert all(line in log for line in stdout.splitlines())
    assert "all records OK" in log and "Selected Tasks" in log  # data check's report, lmms-eval's log
    assert "all records OK" not in stdout and "Selected Tasks" not in stdout and "it/s]" not in stdout
    ours = [line for line in log.split("\n") if line.startswith(("warm start:", "select:", "GRPO steps:"))]
    assert len(ours) >= 10 and not [line for line in ours if "\r" in line]
    assert len(stdout.splitlines()) <= 70 < len(log.splitlines())


def test_a_failing_demo_names_its_log_and_shows_its_end(tmp_path):
    """All output goes to DIR/demo.log at the file-descriptor level; when a stage raises, the
    terminal says where the log is and shows its last lines (the traceback's end among them)."""
    code = (
        "import os, sys\nimport openrlhf_video.synthetic as synthetic\n"
        "def broken(*args, **kwargs):\n    os.write(1, b'chatter written to fd 1\\n')\n"
        "    raise RuntimeError('the data stage broke')\n"
        "synthetic.make_synthetic_dataset = broken\nfrom openrlhf_video import cli\nsys.exit(cli.main(sys.argv[1:]))\n"
    )
    command = [sys.executable, "-c", code, "demo", "--out", str(tmp_path)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    log = (tmp_path / "demo.log").read_text()
    assert run.returncode == 1 and "chatter written to fd 1" in log and "RuntimeError: the data stage broke" in log
    assert "[1/8] data:" in run.stdout and "chatter" not in run.stdout and "Traceback" not in run.stdout
    assert f"({tmp_path / 'demo.log'})" in run.stderr and "RuntimeError: the data stage broke" in run.stderr
    assert len(run.stderr.splitlines()) <= 25


def test_rl_seed_defaults_to_seed():
    from openrlhf_video import demo

    args = demo.build_parser().parse_args(["--out", "x"])
    assert args.seed == 0 and args.rl_seed is None  # main() fills it from --seed


def test_help_lists_the_settings():
    """`openrlhf-video demo --help`, the README's pointer to the demo's settings."""
    run = subprocess.run(
        [sys.executable, "-m", "openrlhf_video", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert all(flag in run.stdout for flag in ("--out", "--warm-start-steps", "--k", "--steps", "--samples", "--lr",
                                               "--learn", "--rl-seed", "--updates", "--kl"))  # fmt: skip


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_the_demo_runs_every_stage_with_each_model_family(family, tmp_path):
    """`--model-family`: the same stages with the family's tiny model, its lmms-eval model class and
    (Qwen3.5) its bf16 rollout engine; the guard holds (it raises under the tests' setting)."""
    flags = ["--videos", "2", "--eval-videos", "1", "--warm-start-steps", "20", "--k", "2", "--steps", "1",
             "--prompts-per-step", "2", "--samples", "2", "--max-new-tokens", "24"]  # fmt: skip
    command = [sys.executable, "-m", "openrlhf_video", "demo", "--out", str(tmp_path), "--model-family", family, *flags]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=850, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["stage_seconds"]) == STAGES and f"--model {family}" in run.stdout
