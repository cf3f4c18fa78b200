"""The mistakes a newcomer makes end with a line or two naming the culprit (file, line, flag or
variable) and exit code 2, never a Python traceback, and before any model or Ray starts."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "openrlhf_video", *map(str, args)],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_refused(done: subprocess.CompletedProcess, *culprits: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    for culprit in culprits:
        assert culprit in done.stderr, done.stderr[-3000:]


def test_select_stops_before_any_rollout_when_videos_are_missing(synthetic_data, tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text(
        f"datasets:\n  - path: {synthetic_data / 'records.jsonl'}\n    video_root: {tmp_path / 'wrong_root'}\n"
    )
    policy = tmp_path / "no_model_needed"  # nothing may be loaded before the check
    done = run_cli("select", "--data", config, "--policy", policy, "--out", tmp_path / "out")
    assert_refused(done, "32 of 32 records have no video file", "wrong_root", "video_root", "--skip-bad 32")
    assert not (tmp_path / "out" / "stats.jsonl").exists()


def test_serve_reward_on_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_refused(run_cli("serve-reward", "--port", port), f"--port {port}", "Address already in use")


@pytest.mark.parametrize(
    "tasks, env, culprits",
    [
        (
            "rlt_nextgqa",
            {"RLT_NEXTGQA_ANNOTATIONS": "/nowhere/test.csv"},
            ["RLT_NEXTGQA_ANNOTATIONS", "/nowhere/test.csv"],
        ),
        ("rlt_nextgqa", {"RLT_NEXTGQA_ANNOTATIONS": ""}, ["RLT_NEXTGQA_ANNOTATIONS is not set"]),
        ("rlt_video", {"RLT_CHARADES_STA_ANNOTATIONS": "{bad}"}, ["RLT_CHARADES_STA_ANNOTATIONS", "bad.txt:2"]),
        ("not_a_task", {}, ["unknown task not_a_task"]),
    ],
)
def test_eval_checks_tasks_and_annotations_before_lmms_eval_starts(tasks, env, culprits, tmp_path):
    bad = tmp_path / "bad.txt"  # Charades-STA's text layout, its second line broken
    bad.write_text("3MSZA 0.0 6.9##person opens the door\n3MSZA six 9.1##person sits\n")
    env = {key: value.format(bad=bad) for key, value in env.items()}
    done = run_cli("eval", "--model", "dummy", "--tasks", tasks, "--output_path", tmp_path / "out", env=env)
    assert_refused(done, *culprits)
    assert "Selected Tasks" not in done.stderr  # refused before lmms-eval itself starts


def test_train_dry_run_with_flags_openrlhf_refuses():
    done = run_cli(
        "train", "--video.dry_run", "--actor.model_name_or_path", "m", "--algo.advantage.estimator", "group_norm"
    )
    assert_refused(done, "OpenRLHF refused these flags", "n_samples_per_prompt > 1")


def test_data_commands_name_what_is_wrong(synthetic_data, tmp_path):
    records = synthetic_data / "records.jsonl"
    assert_refused(run_cli("data", "check", records), "records.jsonl: not a YAML data config", "format: records")
    converted = run_cli("data", "convert", "--format", "activitynet", records, "-o", tmp_path / "out.jsonl")
    assert_refused(converted, "records.jsonl:2", "not JSON Lines", "--format records")
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"dataset:\n  - path: {records}\n")
    assert_refused(run_cli("data", "check", typo), "typo.yaml: unknown key 'dataset' (known: datasets, seed)")


def test_eval_help_shows_ours_first_then_lmms_evals():
    done = run_cli("eval", "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    ours, _, theirs = done.stdout.partition("lmms-eval's own arguments follow.")
    assert ours.startswith("usage: openrlhf-video eval") and "rlt_nextgqa" in ours and "RLT_<TASK>_ANNOTATIONS" in ours
    assert "usage: openrlhf-video eval [-h]" in theirs and "usage: -c" not in theirs and "--model_args" in theirs


@pytest.mark.parametrize(
    "command",
    [["train"], ["select"], ["eval"], ["serve-reward"], ["data", "convert"], ["data", "check"], ["data", "rows"],
     ["demo"]],
    ids="-".join,
)  # fmt: skip
def test_help_of_every_subcommand_shows_defaults(command):
    from openrlhf_video.cli import SUBCOMMANDS

    assert command[0] in SUBCOMMANDS and len(SUBCOMMANDS) == 6  # a new subcommand joins this list
    done = run_cli(*command, "--help")
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    # ours, before OpenRLHF's or lmms-eval's own help: "(default: 2.0)", or the demo's "[8 / 64]"
    # (the rehearsal's / --learn's default)
    ours = re.split(r"OpenRLHF train_ppo_ray flags|lmms-eval's own arguments follow", done.stdout)[0]
    assert re.search(r"\(default: |\[[\w.]+( / [\w.]+)?\]", ours), ours[:3000]


def test_demo_help_shows_every_flags_defaults_as_the_modes_set_them():
    """Every demo flag has a help that ends in its default(s), and the two modes' defaults are
    the values of demo.REHEARSAL and demo.LEARN (re-tuned there, never stale in the help)."""
    from openrlhf_video import demo

    for action in demo.build_parser()._actions:
        if action.dest in ("help", "out", "learn"):
            continue
        text = action.help % vars(action)  # as argparse expands it
        assert re.search(r"\[[^\]]+\]$", text), action.option_strings
        if action.dest in demo.REHEARSAL:
            for mode in (demo.REHEARSAL, demo.LEARN):
                value = mode[action.dest]
                assert (("on" if value else "off") if isinstance(value, bool) else str(value)) in text, text
