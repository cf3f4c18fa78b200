"""`openrlhf-video demo --out DIR`: the whole pipeline rehearsed on a CPU, in a few minutes.

synthetic videos -> data check -> warm start (optional) -> variance-aware selection (vLLM CPU)
-> eval before -> GRPO steps (OpenRLHF's pieces, openrlhf_video.cpu_grpo) -> eval after -> report.

Every stage runs the project's real code path: the `data check`, `select` and `eval` subcommands
themselves, the training rollout executor and reward, lmms-eval with our tasks. The model is the
tiny random Qwen2.5-VL, briefly warm-started, and the data is synthetic: the numbers show that the
machinery runs end to end, not that the method works.
"""

import argparse
import glob
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from openrlhf_video import families

HONEST_NOTE = (
    "A rehearsal of the pipeline on a tiny toy model (~0.7 M parameters, random then briefly warm-started) and "
    "synthetic videos: it shows that every stage runs end to end; it is not a result about the method."
)
# Eval metrics worth a line in the table and a bar in the plot (lmms-eval keys "<metric>,none").
EVAL_METRICS = {"rlt_charades_sta": ("mIoU", "R@0.5", "format"), "rlt_nextgqa": ("Acc@QA", "mIoU", "format")}
EVAL_MIN_PIXELS = 4 * 28 * 28  # per frame, as training's min_pixels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openrlhf-video demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (data, checkpoints, summary.json, report.png)")
    p.add_argument("--videos", type=int, default=8, help="synthetic training clips (4 records each)")
    p.add_argument("--eval-videos", type=int, default=4, help="held-out synthetic clips for evaluation")
    # 400 steps at 2e-3 give rollouts that mostly have the format and vary in content for every
    # warm-start seed tried (format 0.79-0.95 at temperature 1, selection kept 24-27 of 32 records);
    # 200 steps swung with the seed from format 0.04 (kept 3) to 0.69, 300 from 0.71 to 0.85.
    p.add_argument("--warm-start-steps", type=int, default=400,
                   help="supervised steps on the answer format before RL (0: start from the random model)")  # fmt: skip
    p.add_argument("--warm-start-lr", type=float, default=2e-3)
    p.add_argument("--k", type=int, default=8, help="selection rollouts per record")
    p.add_argument("--steps", type=int, default=6, help="GRPO steps")
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--samples", type=int, default=4, help="GRPO group size (rollouts per prompt)")
    p.add_argument(
        "--max-new-tokens", type=int, default=80, help="room for the warm start's longest answer (~64 tokens)"
    )
    # Adam moves every weight by ~lr per step: 1e-3 wiped out the warm start's format in 3 steps.
    p.add_argument("--lr", type=float, default=1e-4, help="GRPO learning rate")
    # Frame sampling for every stage, the warm start's own defaults: train and roll out alike.
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second")
    p.add_argument("--total-pixels", type=int, default=64 * 28 * 28 * 4, help="pixel budget of all of a video's frames")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-family", default="qwen2_5_vl", choices=families.names(),
                   help="the tiny model's family (also lmms-eval's model class in the evals)")  # fmt: skip
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value, least in (("--samples", args.samples, 2), ("--k", args.k, 2), ("--steps", args.steps, 1),
                               ("--prompts-per-step", args.prompts_per_step, 1), ("--videos", args.videos, 1),
                               ("--eval-videos", args.eval_videos, 1), ("--max-new-tokens", args.max_new_tokens, 1)):  # fmt: skip
        if value < least:
            parser.error(f"{flag} {value}: at least {least}")
    for flag, value in (("--lr", args.lr), ("--warm-start-lr", args.warm_start_lr)):
        if not value > 0:  # AdamW refuses it, but only after the warm start and selection
            parser.error(f"{flag} {value}: must be positive")
    if args.total_pixels // 12 < EVAL_MIN_PIXELS:  # checked now, not after the warm start and selection
        parser.error(
            f"--total-pixels {args.total_pixels}: at least {12 * EVAL_MIN_PIXELS} (eval gives each of ~12 frames 1/12)"
        )
    # vLLM's CPU worker logs a warning for every torch.set_num_threads call (hundreds per run) and
    # for each weight-less layer at every weight sync; errors still show. Override to see all.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    # The rollout executor and the reward take their settings from the environment only.
    os.environ["OPENRLHF_VIDEO_FPS"] = str(args.fps)
    os.environ["OPENRLHF_VIDEO_TOTAL_PIXELS"] = str(args.total_pixels)
    os.environ["OPENRLHF_VIDEO_THINK"] = "1"
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"  # nothing here may reach a model hub

    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"--out {out}: {e.strerror}")
    seconds, commands = {}, []
    stage_names = ["data", "data check", "warm start", "selection", "eval before", "GRPO", "eval after", "report"]
    started = time.time()

    def stage(name: str, what: str):
        seconds[name] = time.time()  # turned into a duration by `done`
        print(f"\n[{stage_names.index(name) + 1}/{len(stage_names)}] {name}: {what}", flush=True)

    def done(name: str):
        seconds[name] = round(time.time() - seconds[name], 1)
        print(f"    {name} took {seconds[name]:.1f} s", flush=True)

    from openrlhf_video.synthetic import make_synthetic_dataset
    from openrlhf_video.tiny_model import build_tiny_model

    stage("data", f"{args.videos} training and {args.eval_videos} held-out synthetic clips, tiny {args.model_family}")
    configs = {}
    for split, n_videos, seed in (("train", args.videos, args.seed), ("eval", args.eval_videos, args.seed + 1000)):
        folder = make_synthetic_dataset(out / f"{split}_data", n_videos=n_videos, seed=seed)
        configs[split] = folder / "data.yaml"
        configs[split].write_text("datasets:\n  - path: records.jsonl\n    format: records\n    video_root: .\n")
    tiny_model = build_tiny_model(args.model_family)
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

        policy = warm_start(tiny_model, train_records, out / "warm_start", steps=args.warm_start_steps, lr=args.warm_start_lr,
                            seed=args.seed, fps=args.fps, total_pixels=args.total_pixels)  # fmt: skip
        print(
            f"    the policy is WARM-STARTED: the tiny model after {args.warm_start_steps} supervised steps on ground-truth answers"
        )
    else:
        policy = tiny_model
        print("    no warm start: the random tiny model rarely writes the answer format, so most GRPO groups are flat")
    done("warm start")

    stage("selection", f"{args.k} rollouts per record with vLLM (CPU), keep the records whose rewards vary")
    shutil.rmtree(out / "selection", ignore_errors=True)  # select resumes from its stats: of an older policy here
    code = run_command(
        commands, "select", "--data", configs["train"], "--policy", policy, "--out", out / "selection", "--k", args.k,
        "--max-new-tokens", args.max_new_tokens, "--max-len", 2048, "--fps", args.fps,
        "--total-pixels", args.total_pixels, "--engine", "local", "--seed", args.seed,
    )  # fmt: skip
    if code != 0:
        return code
    selection = json.loads((out / "selection" / "summary.json").read_text())
    kept = [json.loads(line) for line in (out / "selection" / "kept.jsonl").read_text().splitlines()]
    # GRPO on flat groups does nothing; rather than stop the rehearsal, train on everything and say so.
    selection["fallback_to_all_records"] = len(kept) < args.prompts_per_step
    if selection["fallback_to_all_records"]:
        print(
            f"    WARNING: selection kept {len(kept)} records, fewer than one GRPO step needs; GRPO uses all {len(train_records)}"
        )
        kept = train_records
    done("selection")

    stage("eval before", f"lmms-eval with {' and '.join(EVAL_METRICS)} on the held-out clips")
    eval_records = configs["eval"].parent / "records.jsonl"
    before = evaluate(commands, policy, out / "eval" / "before", eval_records, args)
    if before is None:
        return 1
    done("eval before")

    from openrlhf.utils import get_tokenizer

    from openrlhf_video import cpu_grpo
    from openrlhf_video.data import VideoPromptDataset

    stage("GRPO", f"{args.steps} steps x {args.prompts_per_step} prompts x {args.samples} samples: vLLM rollouts, "
          "OpenRLHF group_norm advantages, PolicyLoss and Actor, weights synced into vLLM")  # fmt: skip
    rows = VideoPromptDataset(kept, get_tokenizer(str(policy), None)).rows

    def show(m):
        parts = [
            f"{name} {'-' if m[name] is None else format(m[name], '.3f')}"
            for name in ("reward", "format", "iou", "accuracy")
        ]
        print(f"    step {m['step']}: {'  '.join(parts)}  loss {m['policy_loss']:+.4f}  "
              f"flat groups {m['zero_std_groups']}/{args.prompts_per_step}  {m['seconds']:.1f} s", flush=True)  # fmt: skip

    trained, history = cpu_grpo.train(policy, rows, out / "policy", steps=args.steps, prompts_per_step=args.prompts_per_step,
                                      n_samples=args.samples, max_new_tokens=args.max_new_tokens, lr=args.lr,
                                      seed=args.seed, on_step=show)  # fmt: skip
    done("GRPO")

    stage("eval after", "the same evaluation of the GRPO policy")
    after = evaluate(commands, trained, out / "eval" / "after", eval_records, args)
    if after is None:
        return 1
    done("eval after")

    stage("report", "summary.json and report.png")
    summary = {
        "note": HONEST_NOTE,
        "settings": vars(args) | {"out": str(out)},
        "warm_start": {"steps": args.warm_start_steps, "policy": str(policy)},
        "data": {"train_records": len(train_records), "eval_records_per_task": args.eval_videos},
        "selection": selection | {"grpo_records": len(kept)},
        "grpo": history,
        "eval": {"before": before, "after": after},
        "stage_seconds": seconds,
        "commands": commands,
    }
    plot_report(summary, out / "selection" / "stats.jsonl", out / "report.png")
    done("report")
    summary["total_seconds"] = round(time.time() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print(f"\n{HONEST_NOTE}\nreport: {out / 'report.png'}\nsummary: {out / 'summary.json'}")
    return 0


def run_command(commands: list, *argv, env: dict | None = None) -> int:
    """Run an `openrlhf-video` subcommand in this process exactly as typed in a terminal (with
    `env` set), print it (so the user can rerun any stage alone) and keep it for summary.json."""
    from openrlhf_video import cli

    argv = [str(arg) for arg in argv]
    os.environ.update(env or {})
    commands.append(" ".join([*(f"{name}={shlex.quote(value)}" for name, value in (env or {}).items()),
                              f"openrlhf-video {shlex.join(argv)}"]))  # fmt: skip
    print(f"    $ {commands[-1]}", flush=True)
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


def plot_report(summary: dict, selection_stats: Path, path: Path) -> None:
    """Reward and its components per GRPO step, the selection spread histogram, eval before/after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from openrlhf_video.select import plot_spread, read_finished

    fig, (curves, hist, bars) = plt.subplots(1, 3, figsize=(16, 4.8))
    steps = [m["step"] for m in summary["grpo"]]
    for name in ("reward", "format", "iou", "accuracy"):
        curves.plot(
            steps,
            [m[name] for m in summary["grpo"]],
            marker="o",
            label=name,
            linewidth=2.5 if name == "reward" else 1.2,
        )
    curves.set(xlabel="GRPO step", ylabel="mean over the step's rollouts", title="reward and its components",
               ylim=(-0.02, 1.02), xticks=steps)  # fmt: skip
    curves.legend(fontsize=8)

    sel = summary["selection"]
    plot_spread(hist, list(read_finished(selection_stats).values()), sel["std_threshold"], bins=12)
    hist.set_title(f"selection: kept {sel['kept']} of {sel['records']} records")

    labels = [f"{task.removeprefix('rlt_')}\n{metric}" for task, metrics in EVAL_METRICS.items() for metric in metrics]
    x = range(len(labels))
    for offset, when in ((-0.2, "before"), (0.2, "after")):
        values = [summary["eval"][when][task][metric] for task, metrics in EVAL_METRICS.items() for metric in metrics]
        bars.bar([i + offset for i in x], values, width=0.4, label=f"{when} GRPO")
    bars.set_xticks(list(x), labels, fontsize=7)
    bars.set(ylabel="percent", ylim=(0, 100), title="lmms-eval on held-out synthetic clips")
    bars.legend(fontsize=8)

    fig.suptitle(summary["note"], fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(summary: dict) -> None:
    print("\nstage            seconds")
    for name, value in summary["stage_seconds"].items():
        print(f"  {name:<14} {value:>7.1f}")
    print(f"  {'total':<14} {summary['total_seconds']:>7.1f}")
    first, last = summary["grpo"][0], summary["grpo"][-1]
    print(f"\nGRPO reward      step 1 {first['reward']:.3f} -> step {last['step']} {last['reward']:.3f}")
    print(f"selection        kept {summary['selection']['kept']} of {summary['selection']['records']} records")
    print(f"\n{'eval (held-out)':<30} {'before':>8} {'after':>8}")
    for task, metrics in EVAL_METRICS.items():
        for metric in metrics:
            before, after = summary["eval"]["before"][task][metric], summary["eval"]["after"][task][metric]
            print(f"  {task + ' ' + metric:<28} {before:>8.1f} {after:>8.1f}")
