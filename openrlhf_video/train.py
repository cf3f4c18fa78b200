"""`openrlhf-video train [--video.* flags] [OpenRLHF train_ppo_ray flags...]`: video GRPO.

Applies openrlhf_video.patches (here and, through Ray's worker_process_setup_hook, in every Ray
worker), fills in our plugin flags unless given, and runs `openrlhf.cli.train_ppo_ray` with the
user's flags unchanged. The same run with your own launcher: pass the filled flags yourself and
start Ray with `runtime_env={"worker_process_setup_hook": "openrlhf_video.patches.apply"}` (see
docs/upstream/README.md and launchers/).
"""

import argparse
import importlib
import os
import runpy
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from openrlhf_video import patches
from reward_plugins.protocol import parse_weights

ROLLOUT_FILE = str(Path(__file__).with_name("rollout.py"))
# Our dataset rows (openrlhf_video.data.VideoPromptDataset): rendered prompt, video, label JSON.
PLUGIN_FLAGS = {
    "--train.agent_func_path": ROLLOUT_FILE,
    "--data.input_key": "prompt",
    "--data.label_key": "label",
    "--data.image_key": "video",
}
# Flags that turn on sample packing, which breaks the alignment of video tokens and pixels
# (OpenRLHF checks this only for images, and only before --train.dynamic_batch_enable forces it).
PACKING_FLAGS = ("--ds.packing_samples", "--train.dynamic_batch_enable")
FRAME_ENV = (
    "OPENRLHF_VIDEO_FRAME_CACHE",
    "OPENRLHF_VIDEO_FRAME_CACHE_GB",
    "OPENRLHF_VIDEO_DECODE_THREADS",
)  # data/frames.py


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openrlhf-video train",
        description="Video GRPO on OpenRLHF's train_ppo_ray. Every flag not listed here goes to "
        "OpenRLHF unchanged (its flags follow below). Filled in unless given: "
        + " ".join(f"{flag} {value}" for flag, value in PLUGIN_FLAGS.items()),
        add_help=False,
        allow_abbrev=False,  # never take an OpenRLHF flag for an abbreviation of ours
    )
    video = parser.add_argument_group("openrlhf-video")
    video.add_argument("-h", "--help", action="store_true", help="this help, then OpenRLHF's")
    video.add_argument(
        "--video.fps", type=float, default=2.0, help="frames sampled per second of video (default: %(default)s)"
    )
    video.add_argument(
        "--video.total_pixels", type=int, default=2048 * 28 * 28,
        help="pixel budget of all a video's frames, 28x28 per visual token (default: %(default)s, 2048 tokens)",
    )  # fmt: skip
    video.add_argument(
        "--video.no_think", action="store_true",
        help="reward the no-think format (<answer> only), for rows written by `data rows --no-think`",
    )  # fmt: skip
    video.add_argument(
        "--video.reward_weights",
        default="",
        help='override the reward presets, e.g. "iou=0.7,format=0.3" (default: the presets)',
    )
    video.add_argument(
        "--video.min_reward_std", type=float, default=0.0,
        help="online variance filter: keep a prompt's group only if its reward std is above this "
        "(0 = off; default: %(default)s). Uses OpenRLHF's dynamic filtering; do not combine with --algo.dynamic_filtering_range.",
    )  # fmt: skip
    video.add_argument(
        "--video.dry_run", action="store_true",
        help="check the flags with OpenRLHF's own parser, validation and actor/vLLM layout checks, print them, start nothing",
    )  # fmt: skip
    return parser


def build(argv: list[str]) -> tuple[list[str], dict]:
    """(OpenRLHF argv, environment for every Ray worker) from our command line."""
    ours, rest = _parser().parse_known_args(argv)
    typed = {arg.split("=", 1)[0] for arg in rest if arg.startswith("--")}

    def given(flag: str) -> bool:  # OpenRLHF's parser also takes a flag's unique prefix (--ds.packing)
        return any(flag.startswith(prefix) for prefix in typed)

    for flag in PACKING_FLAGS:
        if given(flag):
            raise SystemExit(f"openrlhf-video train: {flag} packs samples, which breaks video inputs; remove it")
    if given("--ds.ring_attn_size"):
        raise SystemExit("openrlhf-video train: --ds.ring_attn_size turns on sample packing, which breaks video inputs")
    if given("--reward.remote_url"):  # OpenRLHF 0.11.2 replaces it by "agent" once an executor is set
        raise SystemExit(
            "openrlhf-video train: --reward.remote_url would be ignored: the video executor scores each rollout "
            "with reward_plugins itself (configure it with --video.reward_weights and --video.no_think)"
        )

    try:  # the reward reads them in every rollout worker: fail here, before Ray starts
        parse_weights(getattr(ours, "video.reward_weights"))
    except ValueError as e:
        raise SystemExit(f"openrlhf-video train: --video.reward_weights: {e}") from None

    filled = [item for flag, value in PLUGIN_FLAGS.items() if not given(flag) for item in (flag, value)]
    min_std = getattr(ours, "video.min_reward_std")
    if min_std > 0:
        if given("--algo.dynamic_filtering_range"):
            raise SystemExit(
                "openrlhf-video train: --video.min_reward_std sets --algo.dynamic_filtering_range itself "
                "(to the group reward std); give one of the two"
            )
        # Our patched rollout engine reports each group's reward std as its `scores`, so
        # OpenRLHF's filter (min < group mean of scores < max) keeps groups with std > min_std.
        filled += ["--algo.dynamic_filtering_range", str(min_std), "1e9"]
        if not given("--algo.dynamic_filtering_enable"):
            filled.append("--algo.dynamic_filtering_enable")
    env = {
        "OPENRLHF_VIDEO_FPS": str(getattr(ours, "video.fps")),
        "OPENRLHF_VIDEO_TOTAL_PIXELS": str(getattr(ours, "video.total_pixels")),
        "OPENRLHF_VIDEO_THINK": "0" if getattr(ours, "video.no_think") else "1",
        "OPENRLHF_VIDEO_REWARD_WEIGHTS": getattr(ours, "video.reward_weights"),
        patches.MIN_REWARD_STD_ENV: str(min_std),
    }
    # Set where the driver runs, the frame cache and decoder settings must reach the Ray workers
    # too: under `ray job submit` they see only what `ray start` saw, plus this env.
    env.update({name: os.environ[name] for name in FRAME_ENV if name in os.environ})
    return rest + filled, env


def _run_train_ppo_ray(argv: list[str]) -> None:
    sys.argv = ["openrlhf.cli.train_ppo_ray", *argv]
    runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=True)


class _Parsed(Exception):
    """Carries OpenRLHF's parsed and validated args out of train_ppo_ray (dry run)."""

    def __init__(self, namespace):
        super().__init__("parsed")
        self.namespace = namespace


def openrlhf_args(argv: list[str]):
    """OpenRLHF's args for this OpenRLHF argv, from its own parser and checks, starting nothing:
    its `train(args)` runs on through its actor/ref and vLLM layout checks (e.g. with
    --train.colocate_all, vLLM engines x TP = actor GPUs) with Ray, placement groups and the
    strategy stood in for, and stops where it would start the first vLLM engine or model (so
    before its critic/reward colocation check, which GRPO with our executor never reaches)."""
    import openrlhf.trainer.ray
    import openrlhf.trainer.ray.launcher
    import openrlhf.utils
    import ray

    parsed = []

    def stop(*_, **__):
        raise _Parsed(parsed[0])

    stand_ins = {  # OpenRLHF 0.11.2 train_ppo_ray.train, in the order it calls them
        (openrlhf.utils, "get_strategy"): lambda args: parsed.append(args) or SimpleNamespace(print=lambda *_: None),
        (ray, "is_initialized"): lambda: True,
        (importlib.import_module("ray.util.placement_group"), "placement_group"):  # the module, not the function
            lambda *_, **__: SimpleNamespace(ready=lambda: None),
        (ray, "get"): lambda ref: ref,
        (openrlhf.trainer.ray, "create_vllm_engines"): stop,
        (openrlhf.trainer.ray.launcher, "RayActorGroup"): stop,
    }  # fmt: skip
    saved = {key: getattr(*key) for key in stand_ins}
    try:
        for (module, name), stand_in in stand_ins.items():
            setattr(module, name, stand_in)
        _run_train_ppo_ray(argv)
    except _Parsed as stopped:
        return stopped.namespace
    finally:
        for (module, name), original in saved.items():
            setattr(module, name, original)
    raise RuntimeError("train_ppo_ray returned without starting a model")


def init_ray(env: dict, **ray_kwargs) -> None:
    """ray.init with OpenRLHF's own settings, plus our setup hook and settings for every Ray worker."""
    import ray

    # Under `ray job submit --runtime-env-json ...`, Ray merges the job's runtime env into this
    # one and by default refuses any key both name, even with equal values. Ours win: the env
    # vars are read from this process's environment, which already holds the job's.
    os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
    ray.init(
        runtime_env={
            "worker_process_setup_hook": patches.SETUP_HOOK,
            "env_vars": {
                "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
                "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
                "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
                **env,
            },
        },
        **ray_kwargs,
    )


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        _parser().print_help()
        print("\n" + "=" * 30 + " OpenRLHF train_ppo_ray flags " + "=" * 30 + "\n", flush=True)
        try:
            _run_train_ppo_ray(["--help"])
        except SystemExit:
            pass
        return 0
    openrlhf_argv, env = build(argv)
    if "--video.dry_run" in argv:
        try:
            args = openrlhf_args(openrlhf_argv)
        except AssertionError as refused:  # OpenRLHF checks its flags with asserts
            print(f"openrlhf-video train: OpenRLHF refused these flags: {refused}", file=sys.stderr)
            return 2
        # For an own launcher (docs/upstream/README.md), quoted to paste: the variables go to every
        # Ray worker (runtime_env env_vars) and the driver; without them the filter is a mean filter.
        print("env:", shlex.join(f"{key}={value}" for key, value in env.items()))
        print("flags:", shlex.join(openrlhf_argv))
        for group, values in sorted(vars(args).items()):
            print(f"--{group}: {vars(values) if hasattr(values, '__dict__') else values}")
        return 0

    os.environ.update(env)
    patches.apply()
    import ray

    if not ray.is_initialized():
        init_ray(env)
    _run_train_ppo_ray(openrlhf_argv)
    return 0
