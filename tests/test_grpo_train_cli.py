"""`openrlhf-video train`: flag filling and checks, --help, and a dry run through OpenRLHF's own
parser (train_ppo_ray itself needs GPUs: on a GPU-less Ray cluster it waits forever)."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from openrlhf_video import patches
from openrlhf_video.train import PLUGIN_FLAGS, ROLLOUT_FILE, build, main

USER = [
    "--actor.model_name_or_path", "/models/qwen", "--data.prompt_dataset", "rows.jsonl",
    "--rollout.n_samples_per_prompt", "8",
]  # fmt: skip


def test_plugin_flags_are_filled_after_the_users_flags_unchanged():
    argv, env = build(["--video.fps", "1.0", *USER, "--data.label_key", "my_label", "--data.image_k", "clip"])
    assert argv[: len(USER) + 4] == [*USER, "--data.label_key", "my_label", "--data.image_k", "clip"]  # kept
    filled = argv[len(USER) + 4 :]
    # given by the user, in full or as the prefix OpenRLHF's parser also takes: not filled again
    assert "--data.label_key" not in filled and "--data.image_key" not in filled
    assert filled[filled.index("--train.agent_func_path") + 1] == ROLLOUT_FILE
    assert {flag for flag in filled if flag.startswith("--")} == set(PLUGIN_FLAGS) - {
        "--data.label_key",
        "--data.image_key",
    }
    assert env["OPENRLHF_VIDEO_FPS"] == "1.0" and env[patches.MIN_REWARD_STD_ENV] == "0.0"
    assert env["OPENRLHF_VIDEO_THINK"] == "1" and env["OPENRLHF_VIDEO_REWARD_WEIGHTS"] == ""
    _, env = build(
        [*USER, "--video.no_think", "--video.reward_weights", "iou=0.7,format=0.3"]
    )  # what the executor reads
    assert env["OPENRLHF_VIDEO_THINK"] == "0" and env["OPENRLHF_VIDEO_REWARD_WEIGHTS"] == "iou=0.7,format=0.3"
    assert "--video.fps" not in argv  # our flags never reach OpenRLHF


def test_min_reward_std_turns_openrlhfs_filter_into_a_variance_filter():
    argv, env = build([*USER, "--video.min_reward_std", "0.1"])
    assert argv[argv.index("--algo.dynamic_filtering_range") + 1 :][:2] == ["0.1", "1e9"]
    assert "--algo.dynamic_filtering_enable" in argv and env[patches.MIN_REWARD_STD_ENV] == "0.1"
    with pytest.raises(SystemExit, match="give one of the two"):
        build([*USER, "--video.min_reward_std", "0.1", "--algo.dynamic_filtering_range", "0", "1"])


def test_bad_reward_weights_fail_before_anything_starts():
    with pytest.raises(SystemExit, match="--video.reward_weights"):
        build([*USER, "--video.reward_weights", "iou=lots"])


@pytest.mark.parametrize("typed, flag", [
    ("--ds.packing_samples", "--ds.packing_samples"),
    ("--ds.packing", "--ds.packing_samples"),  # OpenRLHF's parser takes a unique prefix
    ("--train.dynamic_batch_enable", "--train.dynamic_batch_enable"),
    ("--ds.ring_attn_size=2", "--ds.ring_attn_size"),
    ("--ds.ring_attn_s=2", "--ds.ring_attn_size"),
])  # fmt: skip
def test_flags_that_pack_samples_are_refused_by_name(typed, flag):
    with pytest.raises(SystemExit, match=flag):
        build([*USER, typed])


def test_a_reward_url_that_openrlhf_would_ignore_is_refused():
    with pytest.raises(SystemExit, match="--reward.remote_url would be ignored"):
        build([*USER, "--reward.remote_url", "http://127.0.0.1:5000/get_reward"])


def test_help_shows_our_flags_and_openrlhfs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--video.min_reward_std" in out and "--video.fps" in out
    assert "--algo.dynamic_filtering_range" in out and "--train.agent_func_path" in out  # OpenRLHF's


def test_dry_run_resolves_the_flags_with_openrlhfs_own_checks(capsys):
    assert main(["--video.dry_run", *USER, "--vllm.num_engines", "1", "--algo.advantage.estimator", "group_norm"]) == 0
    out = capsys.readouterr().out
    assert f"'agent_func_path': '{ROLLOUT_FILE}'" in out and "'image_key': 'video'" in out
    assert "'remote_url': ['agent']" in out  # OpenRLHF's rule: the agent executor scores rewards
    env_line, flags_line = (line for line in out.splitlines() if line.startswith(("env: ", "flags: ")))
    assert "OPENRLHF_VIDEO_MIN_REWARD_STD=0.0" in env_line and "OPENRLHF_VIDEO_FPS=2.0" in env_line
    assert shlex.split(flags_line.removeprefix("flags: "))[:2] == USER[:2]  # quoted: pastes back as the same argv
    # its checks run too, and a refusal is one line, exit 2
    assert main(["--video.dry_run", "--actor.model_name_or_path", "m", "--algo.advantage.estimator", "group_norm"]) == 2
    assert "OpenRLHF refused these flags: group_norm requires n_samples_per_prompt > 1" in capsys.readouterr().err
    # ... and train()'s GPU layout checks: colocated, 2 engines x TP 2 do not fit the actor's 2 GPUs
    layout = [
        "--train.colocate_all",
        "--actor.num_gpus_per_node",
        "2",
        "--ref.num_gpus_per_node",
        "2",
        "--vllm.num_engines",
        "2",
    ]
    assert main(["--video.dry_run", *USER, *layout, "--vllm.tensor_parallel_size", "2"]) == 2
    assert "must be equal to vllm_num_engines * vllm_tensor_parallel_size, got 2 and 4" in capsys.readouterr().err
    assert main(["--video.dry_run", *USER, *layout, "--vllm.tensor_parallel_size", "1"]) == 0


LAUNCHERS = Path(__file__).resolve().parents[1] / "launchers"


@pytest.mark.parametrize("preset", ["train_grounding.sh", "train_mcq.sh", "train_gqa.sh", "train_mixed.sh"])
def test_launcher_presets_pass_openrlhfs_checks(preset, tmp_path, capsys):
    """Each preset's flags (through grpo_video.sh) go through OpenRLHF's parser and validation."""
    fake = tmp_path / "openrlhf-video"  # records the command line instead of training
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGV_FILE"\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", ARGV_FILE=str(tmp_path / "argv"),
               DATA="rows.jsonl", POLICY="/models/qwen", OUT=str(tmp_path / "out"))  # fmt: skip
    subprocess.run(["bash", str(LAUNCHERS / preset)], env=env, check=True)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[0] == "train"
    assert main([*argv[1:], "--video.dry_run"]) == 0
    out = capsys.readouterr().out
    assert "'n_samples_per_prompt': 8" in out and "estimator='group_norm'" in out
    assert "'dynamic_filtering_enable': True" in out  # the preset's --video.min_reward_std


def test_frame_settings_set_here_reach_the_ray_workers(monkeypatch):
    monkeypatch.delenv("OPENRLHF_VIDEO_DECODE_THREADS", raising=False)
    monkeypatch.setenv("OPENRLHF_VIDEO_FRAME_CACHE", "/scratch/frames")
    _, env = build(USER)
    assert env["OPENRLHF_VIDEO_FRAME_CACHE"] == "/scratch/frames" and "OPENRLHF_VIDEO_DECODE_THREADS" not in env


def test_ray_job_passes_the_frame_settings_of_this_shell(tmp_path):
    """The submitted job runs with the head node's environment: train_ray_job.sh hands them on."""
    fake = tmp_path / "ray"  # records the submitted command instead of submitting it
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGV_FILE"\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", ARGV_FILE=str(tmp_path / "argv"), DATA="rows.jsonl",
               POLICY="/models/qwen", OUT=str(tmp_path / "out"), OPENRLHF_VIDEO_FRAME_CACHE="/scratch/my frames")  # fmt: skip
    env.pop("OPENRLHF_VIDEO_DECODE_THREADS", None)
    subprocess.run(
        ["bash", str(LAUNCHERS / "train_ray_job.sh"), str(LAUNCHERS / "train_grounding.sh")], env=env, check=True
    )
    argv = (tmp_path / "argv").read_text().splitlines()
    assert "OPENRLHF_VIDEO_FRAME_CACHE=/scratch/my frames" in argv  # one argument, spaces and all
    assert not any(arg.startswith("OPENRLHF_VIDEO_DECODE_THREADS=") for arg in argv)
