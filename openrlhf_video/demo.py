"""`openrlhf-video demo --out DIR`: the whole pipeline rehearsed on a CPU, in a few minutes.

synthetic videos -> data check -> warm start (optional) -> variance-aware selection (vLLM CPU)
-> eval before -> GRPO steps (OpenRLHF's pieces, openrlhf_video.cpu_grpo) -> eval after -> report.

Every stage runs the project's real code path: the `data check`, `select` and `eval` subcommands
themselves, the training rollout executor and reward, lmms-eval with our tasks. The model is the
tiny random Qwen2.5-VL, briefly warm-started, and the data is synthetic: the numbers show that the
machinery runs end to end, not that the method works. `--learn` runs the version that shows GRPO
learning: a held-out skill the warm start did not teach, beyond seed noise, from the video.
"""

import argparse
import glob
import json
import os
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path

from openrlhf_video import families
from openrlhf_video.cli import QUIET_ENV

HONEST_NOTE = (
    "A rehearsal of the pipeline on a tiny toy model (~0.7 M parameters, random then briefly warm-started) and "
    "synthetic videos: it shows that every stage runs end to end; it is not a result about the method."
)
LEARN_NOTE = (
    "A toy that can learn: a tiny model (~2.9 M parameters) warm-started on answers that ignore the video, synthetic "
    "clips of a blue or yellow square; held-out colour accuracy before and after GRPO, and after GRPO with the videos "
    "shuffled between the clips (the control that the skill comes from the video). Evidence that the RL loop works, "
    "not a result about the method at scale."
)
# Eval metrics worth a line in the table and a bar in the plot (lmms-eval keys "<metric>,none").
EVAL_METRICS = {"rlt_charades_sta": ("mIoU", "R@0.5", "format"), "rlt_nextgqa": ("Acc@QA", "mIoU", "format")}
EVAL_MIN_PIXELS = 4 * 28 * 28  # per frame, as training's min_pixels


# `--learn`: the learning version (README, "Does GRPO learn?"). A task a tiny model can learn from
# the video (the colour of a square that fills the frame for the whole clip, blue or yellow, an
# open answer), the wider and deeper tiny model (tiny_model.SIZES["learn"]), a warm start whose
# answers ignore the video (`format_only`), then GRPO: 16 prompts x 4 samples a step, 8 Adam steps
# on them (2 epochs of 16-sample batches), lr 3e-4 held near the warm start's format by a k3 KL (0.2).
# Each value is a flag's default in that mode; a flag given on the command line wins.
LEARN = {
    "videos": 64, "eval_videos": 128, "warm_start_steps": 400, "warm_start_lr": 1e-3, "k": 4, "steps": 16,
    "prompts_per_step": 16, "samples": 4, "max_new_tokens": 40, "lr": 3e-4, "updates": 2, "kl": 0.2,
    "lmms_eval": False, "train_batch_size": 16, "think": False,
}  # fmt: skip
REHEARSAL = {
    "videos": 8, "eval_videos": 4, "warm_start_steps": 400, "warm_start_lr": 2e-3, "k": 8, "steps": 6,
    "prompts_per_step": 4, "samples": 4, "max_new_tokens": 80, "lr": 1e-4, "updates": 1, "kl": 0.0,
    "lmms_eval": True, "train_batch_size": 16, "think": True,
}  # fmt: skip
LEARN_DATA = {"colors": ["blue", "yellow"], "square": 1.0, "whole_clip": True, "tasks": ("oeqa",), "duration": 4.0}


def format_only(records: list[dict], colors: list[str]) -> list[dict]:
    """The records with answers that carry no information about the video: each true colour's
    clips answered with every colour in turn, so a model fitted to them gives every colour the same
    probability on any clip. The warm start then teaches the answer format and the colour words,
    and whatever reading of the video the policy shows afterwards, GRPO taught it."""
    seen = dict.fromkeys(colors, 0)
    out = []
    for record in records:
        turn = seen[record["answer"]]
        seen[record["answer"]] += 1
        out.append(record | {"answer": colors[(colors.index(record["answer"]) + turn) % len(colors)]})
    return out


def defaults(name: str) -> str:
    """A flag's defaults as its help shows them, "[rehearsal's / --learn's]", read from the two
    dicts so that the help cannot go stale when they are re-tuned (one value when they agree)."""
    shown = [("on" if mode[name] else "off") if isinstance(mode[name], bool) else str(mode[name])
             for mode in (REHEARSAL, LEARN)]  # fmt: skip
    return f"[{shown[0]}]" if shown[0] == shown[1] else f"[{shown[0]} / {shown[1]}]"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openrlhf-video demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (data, checkpoints, summary.json, report.png)")
    p.add_argument("--learn", action="store_true",
                   help="the learning version: a colour task the tiny model can learn from the video, the larger "
                        f"tiny model, {LEARN['eval_videos']} held-out clips (defaults in brackets below are the rehearsal's / --learn's)")  # fmt: skip
    p.add_argument(
        "--videos", type=int, help=f"synthetic training clips (4 records each; 1 with --learn) {defaults('videos')}"
    )
    p.add_argument("--eval-videos", type=int, help=f"held-out synthetic clips for evaluation {defaults('eval_videos')}")
    # 400 steps at 2e-3 give rollouts that mostly have the format and vary in content for every
    # warm-start seed tried (format 0.79-0.95 at temperature 1, selection kept 24-27 of 32 records);
    # 200 steps swung with the seed from format 0.04 (kept 3) to 0.69, 300 from 0.71 to 0.85.
    p.add_argument("--warm-start-steps", type=int,
                   help=f"supervised steps on the answer format before RL (0: start from the random model) {defaults('warm_start_steps')}")  # fmt: skip
    p.add_argument("--warm-start-lr", type=float, help=f"learning rate of the warm start {defaults('warm_start_lr')}")
    p.add_argument("--k", type=int, help=f"selection rollouts per record {defaults('k')}")
    p.add_argument("--steps", type=int, help=f"GRPO steps {defaults('steps')}")
    p.add_argument(
        "--prompts-per-step", type=int, help=f"prompts in each GRPO step's batch {defaults('prompts_per_step')}"
    )
    p.add_argument("--samples", type=int, help=f"GRPO group size (rollouts per prompt) {defaults('samples')}")
    p.add_argument("--max-new-tokens", type=int,
                   help=f"room for the warm start's longest answer (~64 tokens) {defaults('max_new_tokens')}")  # fmt: skip
    # Adam moves every weight by ~lr per step: 1e-3 wiped out the warm start's format in 3 steps.
    p.add_argument("--lr", type=float, help=f"GRPO learning rate {defaults('lr')}")
    p.add_argument(
        "--updates", type=int, help=f"PolicyLoss updates per rollout batch (PPO epochs) {defaults('updates')}"
    )
    p.add_argument("--train-batch-size", type=int,
                   help=f"samples per optimizer step (OpenRLHF's --train.batch_size) {defaults('train_batch_size')}")  # fmt: skip
    p.add_argument("--kl", type=float,
                   help=f"k3 KL loss coefficient towards the warm start (0: no reference model) {defaults('kl')}")  # fmt: skip
    # --learn: the toy has nothing to reason about, and a fixed think sentence to copy is most of
    # the tokens a high-lr step can break (format fell to 0.09 in one run with it).
    p.add_argument("--think", action=argparse.BooleanOptionalAction,
                   help=f"the R1 format, reasoning in <think> before the <answer> (--no-think: the answer only) {defaults('think')}")  # fmt: skip
    p.add_argument("--lmms-eval", action=argparse.BooleanOptionalAction,
                   help=f"the lmms-eval before/after stages (Charades-STA, NExT-GQA; --learn's data has none) {defaults('lmms_eval')}")  # fmt: skip
    # Frame sampling for every stage, the warm start's own defaults: train and roll out alike.
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second [%(default)s]")
    p.add_argument("--total-pixels", type=int, default=64 * 28 * 28 * 4,
                   help="pixel budget of all of a video's frames [%(default)s]")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data, the warm start and selection (and of RL unless --rl-seed) [%(default)s]")  # fmt: skip
    p.add_argument("--rl-seed", type=int, help="seed of GRPO: prompt order, every rollout's sampling, torch [--seed]")
    p.add_argument("--model-family", default="qwen2_5_vl", choices=families.names(),
                   help="the tiny model's family (also lmms-eval's model class in the evals) [%(default)s]")  # fmt: skip
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in (LEARN if args.learn else REHEARSAL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.rl_seed = args.seed if args.rl_seed is None else args.rl_seed
    for flag, value, least in (("--samples", args.samples, 2), ("--k", args.k, 2), ("--steps", args.steps, 1),
                               ("--prompts-per-step", args.prompts_per_step, 1), ("--videos", args.videos, 1),
                               ("--eval-videos", args.eval_videos, 1), ("--max-new-tokens", args.max_new_tokens, 1),
                               ("--updates", args.updates, 1), ("--train-batch-size", args.train_batch_size, 1),
                               ("--warm-start-steps", args.warm_start_steps, 0)):  # fmt: skip
        if value < least:
            parser.error(f"{flag} {value}: at least {least}")
    for flag, value in (("--lr", args.lr), ("--warm-start-lr", args.warm_start_lr)):
        if not value > 0:  # AdamW refuses it, but only after the warm start and selection
            parser.error(f"{flag} {value}: must be positive")
    if args.total_pixels // 12 < EVAL_MIN_PIXELS:  # checked now, not after the warm start and selection
        parser.error(
            f"--total-pixels {args.total_pixels}: at least {12 * EVAL_MIN_PIXELS} (eval gives each of ~12 frames 1/12)"
        )
    if args.kl < 0:
        parser.error(f"--kl {args.kl}: must be at least 0")
    if args.learn and args.model_family != "qwen2_5_vl":  # here, while the terminal shows our errors
        parser.error("--learn has a larger tiny model for --model-family qwen2_5_vl only")
    # vLLM's CPU worker logs a warning for every torch.set_num_threads call (hundreds per run) and
    # for each weight-less layer at every weight sync; errors still show. A level of the user's own
    # wins; cli.py's quiet default (WARNING) is already set when this runs.
    if os.environ.get("VLLM_LOGGING_LEVEL") in (None, QUIET_ENV["VLLM_LOGGING_LEVEL"]):
        os.environ["VLLM_LOGGING_LEVEL"] = "ERROR"
    # The rollout executor and the reward take their settings from the environment only.
    os.environ["OPENRLHF_VIDEO_FPS"] = str(args.fps)
    os.environ["OPENRLHF_VIDEO_TOTAL_PIXELS"] = str(args.total_pixels)
    os.environ["OPENRLHF_VIDEO_THINK"] = "1" if args.think else "0"
    # One torch thread: the same arithmetic on any machine (a reduction split over more threads
    # sums in another order), and no oversubscription. With 2 threads on 2 busy cores the warm
    # start ran 60x slower (0.3 vs 20 steps/s: OpenMP threads waiting for descheduled peers).
    import torch

    torch.set_num_threads(1)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"  # nothing here may reach a model hub

    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"--out {out}: {e.strerror}")
    log = out / "demo.log"
    terminal_stderr = log_everything_to(log)
    say(f"the full log: {log}")
    try:
        code = run(args, out)
    except Exception:  # noqa: BLE001 - its traceback goes to the log, the log's end to the terminal
        traceback.print_exc()
        code = 1
    if code != 0:
        sys.stderr.flush()
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        print(f"openrlhf-video demo failed; the end of its log ({log}):\n{tail}", file=terminal_stderr, flush=True)
    return code


# The terminal's stdout once `log_everything_to` has sent fds 1 and 2 to the log (None before).
_terminal = None


def log_everything_to(log: Path):
    """From now to the end of the process, fds 1 and 2 go to `log`: ours, third-party, C-level and
    child processes' output, and what libraries print at exit (triton's ~50-line nanobind leak
    report). `say` writes the demo's own lines to the terminal as well. Returns the terminal's stderr."""
    global _terminal
    sys.stdout.flush()
    sys.stderr.flush()
    _terminal, terminal_stderr = open(os.dup(1), "w", buffering=1), open(os.dup(2), "w", buffering=1)
    with open(log, "w") as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
    sys.stdout.reconfigure(line_buffering=True)  # in order with stderr in the log
    return terminal_stderr


def say(*parts) -> None:
    """print() for the demo's own lines (stages, results, the table): to the log and the terminal."""
    print(*parts, flush=True)
    if _terminal is not None:
        print(*parts, file=_terminal, flush=True)


def run(args, out: Path) -> int:
    """The eight stages, into `out`."""
    seconds, commands = {}, []
    stage_names = ["data", "data check", "warm start", "selection", "eval before", "GRPO", "eval after", "report"]
    started = time.time()

    def stage(name: str, what: str):
        seconds[name] = time.time()  # turned into a duration by `done`
        say(f"\n[{stage_names.index(name) + 1}/{len(stage_names)}] {name}: {what}")

    def done(name: str):
        seconds[name] = round(time.time() - seconds[name], 1)
        say(f"    {name} took {seconds[name]:.1f} s")

    from openrlhf_video.synthetic import make_synthetic_dataset
    from openrlhf_video.tiny_model import build_tiny_model, build_tiny_qwen25vl

    stage("data", f"{args.videos} training and {args.eval_videos} held-out synthetic clips, tiny {args.model_family}"
          + (" (--learn: a blue or yellow square filling the frame; the larger tiny model)" if args.learn else ""))  # fmt: skip
    configs = {}
    for split, n_videos, seed in (("train", args.videos, args.seed), ("eval", args.eval_videos, args.seed + 1000)):
        folder = make_synthetic_dataset(out / f"{split}_data", n_videos=n_videos, seed=seed,
                                        **(LEARN_DATA if args.learn else {}))  # fmt: skip
        configs[split] = folder / "data.yaml"
        configs[split].write_text("datasets:\n  - path: records.jsonl\n    format: records\n    video_root: .\n")
    tiny_model = build_tiny_qwen25vl(size="learn") if args.learn else build_tiny_model(args.model_family)
    done("data")

    from openrlhf_video.data import load_config

    stage("data check", "every video decodes, every span fits")
    for split, config in configs.items():
        if run_command(commands, "data", "check", config) != 0:
            print(f"openrlhf-video demo: the synthetic {split} data failed its check (see above)", file=sys.stderr)
            return 1
    train_records = load_config(configs["train"])
    done("data check")

    stage(
        "warm start",
        f"{args.warm_start_steps} supervised steps on the answer format, so rollouts are neither all right nor all wrong",
    )
    if args.warm_start_steps > 0:
        from openrlhf_video.warm_start import warm_start

        # --learn: the warm start's answers say nothing about the video (see `format_only`).
        warm_records = format_only(train_records, LEARN_DATA["colors"]) if args.learn else train_records
        policy = warm_start(tiny_model, warm_records, out / "warm_start", steps=args.warm_start_steps, lr=args.warm_start_lr,
                            seed=args.seed, fps=args.fps, total_pixels=args.total_pixels, decay=args.learn, think=args.think)  # fmt: skip
        say(f"    the policy is WARM-STARTED: the tiny model after {args.warm_start_steps} supervised steps on "
            + ("the answer format, with answers independent of the video" if args.learn else "ground-truth answers"))  # fmt: skip
    else:
        policy = tiny_model
        say("    no warm start: the random tiny model rarely writes the answer format, so most GRPO groups are flat")
    done("warm start")

    stage("selection", f"{args.k} rollouts per record with vLLM (CPU), keep the records whose rewards vary")
    shutil.rmtree(out / "selection", ignore_errors=True)  # select resumes from its stats: of an older policy here
    code = run_command(
        commands, "select", "--data", configs["train"], "--policy", policy, "--out", out / "selection", "--k", args.k,
        "--max-new-tokens", args.max_new_tokens, "--max-len", 2048, "--fps", args.fps,
        "--total-pixels", args.total_pixels, "--engine", "local", "--seed", args.seed, *([] if args.think else ["--no-think"]),
    )  # fmt: skip
    if code != 0:
        return code
    selection = json.loads((out / "selection" / "summary.json").read_text())
    kept = [json.loads(line) for line in (out / "selection" / "kept.jsonl").read_text().splitlines()]
    # GRPO on flat groups does nothing; rather than stop the rehearsal, train on everything and say so.
    selection["fallback_to_all_records"] = len(kept) < args.prompts_per_step
    if selection["fallback_to_all_records"]:
        say(
            f"    WARNING: selection kept {len(kept)} records, fewer than one GRPO step needs; GRPO uses all {len(train_records)}"
        )
        kept = train_records
    done("selection")

    from openrlhf.utils import get_tokenizer

    from openrlhf_video import cpu_grpo
    from openrlhf_video.data import VideoPromptDataset

    stage("eval before", "greedy colour answers on the held-out clips, own and shuffled videos (vLLM)"
          + (f"; lmms-eval with {' and '.join(EVAL_METRICS)}" if args.lmms_eval else ""))  # fmt: skip
    eval_records = configs["eval"].parent / "records.jsonl"
    before = None
    if args.lmms_eval:
        before = evaluate(commands, policy, out / "eval" / "before", eval_records, args)
        if before is None:
            return 1
    heldout_rows = VideoPromptDataset(
        [r for r in load_config(configs["eval"]) if r["task"] == "oeqa"],
        get_tokenizer(str(policy), None),
        think=args.think,
    ).rows
    engine = cpu_grpo.InProcessEngine(policy, seed=args.rl_seed)  # GRPO goes on with it
    skill = {"before": cpu_grpo.heldout_eval(engine, get_tokenizer(str(policy), None), heldout_rows,
                                             max_new_tokens=args.max_new_tokens, shuffle_seed=args.seed)}  # fmt: skip
    show_skill("before", skill["before"])
    done("eval before")

    stage("GRPO", f"{args.steps} steps x {args.prompts_per_step} prompts x {args.samples} samples: vLLM rollouts, "
          "OpenRLHF group_norm advantages, PolicyLoss and Actor, weights synced into vLLM")  # fmt: skip
    rows = VideoPromptDataset(kept, get_tokenizer(str(policy), None), think=args.think).rows

    def show(m):
        parts = [
            f"{name} {'-' if m[name] is None else format(m[name], '.3f')}"
            for name in ("reward", "format", "iou", "accuracy")
        ]
        say(f"    step {m['step']}: {'  '.join(parts)}  loss {m['policy_loss']:+.4f}  "
            f"flat groups {m['zero_std_groups']}/{args.prompts_per_step}  {m['seconds']:.1f} s")  # fmt: skip

    trained, history = cpu_grpo.train(policy, rows, out / "policy", steps=args.steps, prompts_per_step=args.prompts_per_step,
                                      n_samples=args.samples, max_new_tokens=args.max_new_tokens, lr=args.lr,
                                      seed=args.rl_seed, updates=args.updates, train_batch_size=args.train_batch_size, kl_coef=args.kl, engine=engine,
                                      on_step=show)  # fmt: skip
    done("GRPO")

    stage("eval after", "the same evaluation of the GRPO policy")
    skill["after"] = cpu_grpo.heldout_eval(engine, get_tokenizer(str(trained), None), heldout_rows,
                                           max_new_tokens=args.max_new_tokens, shuffle_seed=args.seed)  # fmt: skip
    show_skill("after", skill["after"])
    after = None
    if args.lmms_eval:
        after = evaluate(commands, trained, out / "eval" / "after", eval_records, args)
        if after is None:
            return 1
    done("eval after")

    stage("report", "summary.json and report.png")
    summary = {
        "note": LEARN_NOTE if args.learn else HONEST_NOTE,
        "settings": vars(args) | {"out": str(out)},
        "warm_start": {"steps": args.warm_start_steps, "policy": str(policy)},
        "data": {"train_records": len(train_records), "eval_records_per_task": args.eval_videos},
        "selection": selection | {"grpo_records": len(kept)},
        "grpo": history,
        "eval": {"before": before, "after": after},
        "heldout": heldout_summary(skill),
        "stage_seconds": seconds,
        "commands": commands,
    }
    plot_report(summary, out / "selection" / "stats.jsonl", out / "report.png")
    done("report")
    summary["total_seconds"] = round(time.time() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    say(f"\n{summary['note']}\nreport: {out / 'report.png'}\nsummary: {out / 'summary.json'}\nlog: {out / 'demo.log'}")
    return 0


def show_skill(when: str, result: dict) -> None:
    own, shuffled = result["own"]["accuracy"], result["shuffled"]["accuracy"]
    shuffled_text = "-" if shuffled is None else f"{sum(shuffled) / len(shuffled):.3f}"
    say(f"    held-out colour accuracy {when} GRPO: {sum(own) / len(own):.3f} ({len(own)} clips), "
        f"videos shuffled between them {shuffled_text}")  # fmt: skip


def heldout_summary(skill: dict) -> dict:
    """The primary held-out metric (colour accuracy, greedy) before and after GRPO and after GRPO
    on shuffled videos, with paired standard errors: after - before, after - after-shuffled."""
    from openrlhf_video.cpu_grpo import paired_stats

    before, after = skill["before"]["own"]["accuracy"], skill["after"]["own"]["accuracy"]
    shuffled = skill["after"]["shuffled"]["accuracy"]
    summary = {
        "metric": "accuracy of the colour answer (oeqa), greedy, on held-out clips",
        "n": len(after),
        "before": sum(before) / len(before),
        "after": sum(after) / len(after),
        "after_shuffled": None if shuffled is None else sum(shuffled) / len(shuffled),
        "before_shuffled": None if skill["before"]["shuffled"]["accuracy"] is None
        else sum(skill["before"]["shuffled"]["accuracy"]) / len(before),
        "gain": paired_stats(after, before),
        "video_effect": None if shuffled is None else paired_stats(after, shuffled),
        "format": {when: sum(skill[when]["own"]["format"]) / len(after) for when in ("before", "after")},
        "answers": {when: skill[when]["own"]["answers"] for when in ("before", "after")},
        "answers_shuffled": skill["after"]["shuffled"]["answers"],
    }  # fmt: skip
    summary["learned"] = bool(
        summary["gain"]["z"] is not None and summary["gain"]["z"] >= 3
        and summary["video_effect"] is not None and summary["video_effect"]["z"] is not None
        and summary["video_effect"]["z"] >= 3
    )  # fmt: skip
    return summary


def run_command(commands: list, *argv, env: dict | None = None) -> int:
    """Run an `openrlhf-video` subcommand in this process exactly as typed in a terminal (with
    `env` set), print it (so the user can rerun any stage alone) and keep it for summary.json."""
    from openrlhf_video import cli

    argv = [str(arg) for arg in argv]
    os.environ.update(env or {})
    commands.append(" ".join([*(f"{name}={shlex.quote(value)}" for name, value in (env or {}).items()),
                              f"openrlhf-video {shlex.join(argv)}"]))  # fmt: skip
    say(f"    $ {commands[-1]}")
    return cli.main(argv)


def evaluate(commands: list, model_dir, output: Path, records: Path, args) -> dict | None:
    """`openrlhf-video eval` (lmms-eval) of `model_dir` on the held-out `records`; {task: {metric: value}}."""
    # lmms-eval's model caps pixels per frame, training caps them per video (~12 frames per clip).
    model_args = (f"pretrained={model_dir},device=cpu,device_map=cpu,fps={args.fps},max_num_frames=32,"
                  f"min_pixels={EVAL_MIN_PIXELS},max_pixels={args.total_pixels // 12}")  # fmt: skip
    code = run_command(commands, "eval", "--model", args.model_family, "--model_args", model_args, "--tasks", ",".join(EVAL_METRICS),
                       "--gen_kwargs", f"max_new_tokens={args.max_new_tokens}", "--output_path", output, "--log_samples",
                       "--seed", args.seed,
                       env={"RLT_CHARADES_STA_ANNOTATIONS": str(records), "RLT_NEXTGQA_ANNOTATIONS": str(records)})  # fmt: skip
    if code != 0:
        print(f"openrlhf-video demo: evaluation of {model_dir} failed (see above)", file=sys.stderr)
        return None
    results = json.loads(
        Path(max(glob.glob(f"{output}/**/*_results.json", recursive=True), key=os.path.getmtime)).read_text()
    )
    return {task: {metric: results["results"][task][f"{metric},none"] for metric in metrics}
            for task, metrics in EVAL_METRICS.items()}  # fmt: skip


def moving_average(values: list, window: int = 3) -> list:
    """The trailing mean of up to `window` values (None entries skipped)."""
    out = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        out.append(sum(recent) / len(recent) if recent else None)
    return out


def plot_report(summary: dict, selection_stats: Path, path: Path) -> None:
    """Reward and its components per GRPO step (with a moving average of the reward), the
    selection spread histogram, the held-out skill before/after GRPO with the shuffled-video
    control (error bars: standard errors), and lmms-eval before/after (when it ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from openrlhf_video.select import plot_spread, read_finished

    fig, (curves, hist, skill, bars) = plt.subplots(1, 4, figsize=(20, 4.8))
    steps = [m["step"] for m in summary["grpo"]]
    for name in ("reward", "format", "iou", "accuracy"):
        values = [m[name] for m in summary["grpo"]]
        if all(v is None for v in values):
            continue
        line = curves.plot(steps, values, marker="o", label=name, linewidth=2.5 if name == "reward" else 1.2, alpha=0.6)
        curves.plot(steps, moving_average(values), color=line[0].get_color(), linestyle="--", linewidth=1.5,
                    label=f"{name}, moving average (3)")  # fmt: skip
    curves.set(xlabel="GRPO step", ylabel="mean over the step's rollouts", title="reward and its components",
               ylim=(-0.02, 1.02))  # fmt: skip
    curves.legend(fontsize=7)

    sel = summary["selection"]
    plot_spread(hist, list(read_finished(selection_stats).values()), sel["std_threshold"], bins=12)
    hist.set_title(f"selection: kept {sel['kept']} of {sel['records']} records")

    held = summary["heldout"]
    names, values, errors = [], [], []
    for label, key in (
        ("before GRPO", "before"),
        ("after GRPO", "after"),
        ("after GRPO,\nvideos shuffled", "after_shuffled"),
    ):
        if held[key] is not None:
            names.append(label)
            values.append(held[key])
            errors.append((held[key] * (1 - held[key]) / max(1, held["n"] - 1)) ** 0.5)
    skill.bar(names, values, yerr=errors, capsize=6, color=["tab:gray", "tab:blue", "tab:orange"][: len(names)])
    gain, video = held["gain"], held["video_effect"]
    text = f"after - before: {gain['diff']:+.3f} ± {gain['se']:.3f} (paired SE)"
    if video is not None:
        text += f"\nafter - shuffled: {video['diff']:+.3f} ± {video['se']:.3f}"
    skill.set(ylabel="colour accuracy (greedy)", ylim=(0, 1), title=f"held-out skill, {held['n']} clips\n{text}")
    skill.title.set_fontsize(8)
    skill.tick_params(axis="x", labelsize=8)

    if summary["eval"]["before"] is not None:
        labels = [
            f"{task.removeprefix('rlt_')}\n{metric}" for task, metrics in EVAL_METRICS.items() for metric in metrics
        ]
        x = range(len(labels))
        for offset, when in ((-0.2, "before"), (0.2, "after")):
            values = [
                summary["eval"][when][task][metric] for task, metrics in EVAL_METRICS.items() for metric in metrics
            ]
            bars.bar([i + offset for i in x], values, width=0.4, label=f"{when} GRPO")
        bars.set_xticks(list(x), labels, fontsize=7)
        bars.set(ylabel="percent", ylim=(0, 100), title="lmms-eval on held-out synthetic clips")
        bars.legend(fontsize=8)
    else:
        bars.set_axis_off()
        bars.text(0.5, 0.5, "lmms-eval stages off\n(--no-lmms-eval; --learn's data\nhas no grounding records)",
                  ha="center", va="center")  # fmt: skip

    fig.suptitle(summary["note"], fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(summary: dict) -> None:
    say("\nstage            seconds")
    for name, value in summary["stage_seconds"].items():
        say(f"  {name:<14} {value:>7.1f}")
    say(f"  {'total':<14} {summary['total_seconds']:>7.1f}")
    first, last = summary["grpo"][0], summary["grpo"][-1]
    say(f"\nGRPO reward      step 1 {first['reward']:.3f} -> step {last['step']} {last['reward']:.3f}")
    say(f"selection        kept {summary['selection']['kept']} of {summary['selection']['records']} records")
    held = summary["heldout"]
    say(f"\nheld-out colour accuracy ({held['n']} clips, greedy)")
    say(f"  before GRPO {held['before']:.3f}  after {held['after']:.3f}  "
        f"gain {held['gain']['diff']:+.3f} ± {held['gain']['se']:.3f} (paired SE)")  # fmt: skip
    if held["video_effect"] is not None:
        video = held["video_effect"]
        say(f"  after GRPO, videos shuffled between clips {held['after_shuffled']:.3f}  "
            f"after - shuffled {video['diff']:+.3f} ± {video['se']:.3f}")  # fmt: skip
    say(f"  learned from the video (both differences >= 3 SE): {'YES' if held['learned'] else 'no'}")
    if summary["eval"]["before"] is None:
        return
    say(f"\n{'eval (held-out)':<30} {'before':>8} {'after':>8}")
    for task, metrics in EVAL_METRICS.items():
        for metric in metrics:
            before, after = summary["eval"]["before"][task][metric], summary["eval"]["after"][task][metric]
            say(f"  {task + ' ' + metric:<28} {before:>8.1f} {after:>8.1f}")
