"""Variance-aware data selection: `openrlhf-video select`.

Roll out every candidate record K times with the starting policy, score each rollout with
`reward_plugins.score`, and keep the records whose rewards vary: a GRPO group whose rollouts all
score the same has zero advantage everywhere and carries no gradient.

    openrlhf-video select --data data.yaml --policy MODEL --k 8 --out DIR [--budget N]
    openrlhf-video select --data data.yaml --rollouts rollouts.jsonl --out DIR   # no model

Keep rules (DESIGN.md), on the task's own signal rather than the total reward, because a group
that only varies in format teaches the format, not the task:
  discrete   (mcq, oeqa): 0 < mean accuracy < 1
  continuous (tvg):        sample std of the IoU >= --std-threshold (default 0.1; per task: tvg=0.15)
  both       (gqa):        either of the two
With --budget N at most N records are kept, highest spread (the std the rule looked at) first.

Rollouts come from vLLM: on a GPU cluster OpenRLHF's engines on Ray (one per
--tensor-parallel-size GPUs, all of the cluster's GPUs) running the training rollout itself
(openrlhf_video/rollout.py), on a CPU machine vLLM's CPU build in this process.

Results are appended to DIR/stats.jsonl one record at a time, so a run killed at any moment,
even by SIGKILL, resumes where it stopped without losing or duplicating a record. The keep
decision is made from stats.jsonl at the end: rerunning with another threshold or budget
redoes no rollouts. DIR gets kept.jsonl + kept.yaml (a data config for training), stats.jsonl,
summary.json and spread_hist.png.
"""

import argparse
import fcntl
import json
import logging
import math
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from openrlhf_video.data import DataError, Skips, label_json, load_config, render_prompt
from openrlhf_video.progress import progress

logger = logging.getLogger(__name__)

RULE = {"mcq": "discrete", "oeqa": "discrete", "tvg": "continuous", "gqa": "both"}
SIGNALS = {"discrete": ("accuracy",), "continuous": ("iou",), "both": ("accuracy", "iou")}
DEFAULT_STD_THRESHOLD = 0.1  # IoU std; the paper gives no number, this keeps visibly spread groups
MAX_SPREAD = 0.75  # the largest sample std of values in [0, 1] is 0.707 (K = 2, one 0 and one 1)


def record_stats(record: dict, responses: list[str], *, think: bool = True) -> dict:
    """One line of stats.jsonl: the K rewards of one record and their spread per component.

    Standard deviations are sample ones (ddof=1), as in GRPO's group normalisation and the
    online filter (openrlhf_video.patches), so one threshold means the same offline and online.
    """
    from reward_plugins import score

    label = label_json(record)
    scored = [score(response, label, think=think) for response in responses]
    stats = {"id": record["id"], "task": record["task"], "source": record.get("source"), "k": len(responses)}
    for name in ("reward", "accuracy", "iou", "format"):
        if name in scored[0]:
            values = [float(s[name]) for s in scored]
            stats[f"{name}_mean"], stats[f"{name}_std"] = statistics.fmean(values), statistics.stdev(values)
    stats["rewards"] = [s["reward"] for s in scored]
    return stats


def parse_thresholds(values: list[str]) -> dict:
    """`--std-threshold 0.1 --std-threshold tvg=0.15` -> {None: 0.1, "tvg": 0.15} (None: every task)."""
    thresholds = {None: DEFAULT_STD_THRESHOLD}
    for value in values:
        task, _, number = value.rpartition("=")
        if task and RULE.get(task) not in ("continuous", "both"):
            raise DataError(f"--std-threshold {value}: {task!r} is not a task with a continuous reward (tvg, gqa)")
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not threshold >= 0:  # also NaN, which no std would pass
            raise DataError(f"--std-threshold {value}: expected a number >= 0 or TASK=NUMBER")
        thresholds[task or None] = threshold
    return thresholds


def spread(stats: dict) -> float:
    """The std the keep rule looks at: accuracy's for discrete tasks, IoU's for continuous, the larger for both."""
    return max(stats[f"{name}_std"] for name in SIGNALS[RULE[stats["task"]]])


def is_informative(stats: dict, thresholds: dict) -> bool:
    if stats.get("error"):
        return False
    rule = RULE[stats["task"]]
    discrete = 0.0 < stats.get("accuracy_mean", 0.0) < 1.0
    continuous = stats.get("iou_std", 0.0) >= thresholds.get(stats["task"], thresholds[None])
    return {"discrete": discrete, "continuous": continuous, "both": discrete or continuous}[rule]


def choose(all_stats: list[dict], thresholds: dict, budget: int | None = None) -> set[str]:
    """Ids of the kept records: the informative ones, capped at `budget`, highest spread first."""
    kept = [s for s in all_stats if is_informative(s, thresholds)]
    if budget is not None:
        kept = sorted(kept, key=lambda s: (-spread(s), s["id"]))[:budget]
    return {s["id"] for s in kept}


# ---------------------------------------------------------------- the resumable stats file
def read_finished(stats_path: Path) -> dict[str, dict]:
    """Stats already on disk, by id. A last line cut short by a kill is truncated away, so
    that record is simply done again."""
    if not stats_path.exists():
        return {}
    data = stats_path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        logger.warning("%s: dropping an unfinished last line (the previous run was killed)", stats_path)
        with open(stats_path, "r+b") as f:
            f.truncate(len(complete))
    finished = {}
    for lineno, line in enumerate(complete.decode().splitlines(), 1):
        try:
            stats = json.loads(line)
            finished[stats["id"]] = stats
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{stats_path}:{lineno}: not a stats line ({e}); delete the file to start over") from None
    return finished


# ---------------------------------------------------------------- where the K responses come from
# Each source yields (record, responses, error): error is None, or why the record has no
# rollouts (an unreadable video); such a record is written, counted and never kept.
def file_rollouts(records: list[dict], path: str):
    """Responses produced elsewhere: JSONL lines {"id": ..., "response": "..."}, K lines per id."""
    responses = defaultdict(list)
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                responses[row["id"]].append(str(row["response"]))
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f'{path}:{lineno}: expected {{"id": ..., "response": ...}} ({e})') from None
    counts = {record["id"]: len(responses.get(record["id"], ())) for record in records}
    usual = Counter(counts.values()).most_common(1)[0][0] if counts else 0
    for record_id, got in counts.items():  # one K for all: the keep rules mean different things at K=2 and K=8
        if got < 2 or got != usual:
            raise DataError(f"{path}: record {record_id!r} has {got} responses; selection needs at least 2, "
                            f"and the same number for every record (most have {usual})")  # fmt: skip
    unknown = set(responses) - {r["id"] for r in records}
    if unknown:
        logger.warning(
            "%s: %d ids are not among the data's records (ignored), e.g. %r", path, len(unknown), min(unknown)
        )
    for record in records:
        yield record, responses[record["id"]], None


def local_rollouts(records: list[dict], args):
    """vLLM in this process (the CPU build on a CPU machine), K samples per request, requests
    built by the training rollout's own `video_inputs`."""
    from transformers import AutoProcessor
    from vllm import SamplingParams

    from openrlhf_video.cpu_grpo import in_process_llm
    from openrlhf_video.data.frames import load_frames
    from openrlhf_video.rollout import video_inputs
    from openrlhf_video.tiny_model import VISION_TOKENS

    processor = AutoProcessor.from_pretrained(args.policy)
    llm = in_process_llm(args.policy, max_len=args.max_len, seed=args.seed)
    # No per-request seed: it would give every record the same random stream.
    params = SamplingParams(
        n=args.k, temperature=args.temperature, max_tokens=args.max_new_tokens, bad_words=VISION_TOKENS
    )
    for start in range(0, len(records), args.batch_size):
        batch, requests = [], []
        for record in records[start : start + args.batch_size]:
            try:
                frames = load_frames(record["video"], clip=record["clip"], fps=args.fps, total_pixels=args.total_pixels)
            except DataError as e:
                yield record, [], str(e)
                continue
            ids, _, _, video = video_inputs(processor, render_prompt(processor, record, think=args.think), frames)
            batch.append(record)
            requests.append({"prompt_token_ids": ids, "multi_modal_data": {"video": [video]}})
        for record, output in zip(batch, llm.generate(requests, params, use_tqdm=False)):
            yield record, [sample.text for sample in output.outputs], None


def engine_kwargs(args, cluster_gpus: float) -> dict:
    """Arguments of OpenRLHF's `create_vllm_engines`: one engine per --tensor-parallel-size GPUs
    of the cluster, each running openrlhf_video/rollout.py's AgentExecutor (the training rollout)."""
    num_engines = args.num_engines or int(cluster_gpus) // args.tensor_parallel_size
    if num_engines < 1:
        raise DataError(f"the Ray cluster has {cluster_gpus} GPUs, too few for one engine of "
                        f"--tensor-parallel-size {args.tensor_parallel_size}; on a CPU machine use --engine local")  # fmt: skip
    return dict(
        num_engines=num_engines,
        tensor_parallel_size=args.tensor_parallel_size,
        pretrain=args.policy,
        seed=args.seed,
        full_determinism=False,
        enable_prefix_caching=True,
        enforce_eager=False,
        max_model_len=args.max_len,
        gpu_memory_utilization=0.9,
        agent_func_path=str(Path(__file__).with_name("rollout.py")),
    )


def engine_request(record: dict, processor, sampling_params, args) -> dict:
    """Keyword arguments of OpenRLHF's `RolloutRayActor.generate_responses` for one record's K
    samples: the same prompt, label and video dict as a training row (VideoPromptDataset)."""
    return dict(
        prompt=render_prompt(processor, record, think=args.think),
        label=label_json(record),
        sampling_params=sampling_params,
        max_length=args.max_len,
        hf_tokenizer=processor,
        num_samples=args.k,
        images={"path": record["video"], "clip": record["clip"]},
    )


def rollout_env(args) -> dict:
    """What the engines' AgentExecutor reads (it takes no arguments): our frame settings."""
    return {"OPENRLHF_VIDEO_FPS": str(args.fps), "OPENRLHF_VIDEO_TOTAL_PIXELS": str(args.total_pixels),
            "OPENRLHF_VIDEO_THINK": str(int(args.think))}  # fmt: skip


def ray_rollouts(records: list[dict], args):
    """OpenRLHF's vLLM engines on Ray, data-parallel over every GPU of the cluster. Records go
    round-robin to the engines with a bounded number in flight; vLLM batches inside each engine.

    Not Ray Data's LLM processor (ray.data.llm, Ray 2.55): its vLLM stage keeps only the first
    sample of a request (K samples would be K copies of each video request), and it would build
    requests its own way instead of running the training rollout that selection must mirror."""
    import ray
    from openrlhf.trainer.ray.vllm_engine import create_vllm_engines
    from transformers import AutoProcessor
    from vllm import SamplingParams

    from openrlhf_video import patches
    from openrlhf_video.train import init_ray

    os.environ.update(rollout_env(args))
    patches.apply()  # video limits for the engines; Ray pickles the patched actor class
    init_ray(rollout_env(args))
    engines = create_vllm_engines(**engine_kwargs(args, ray.cluster_resources().get("GPU", 0)))
    processor = AutoProcessor.from_pretrained(args.policy)
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_new_tokens)
    window = 16 * len(engines)
    pending = {}
    for i, record in enumerate(records):
        request = engine_request(record, processor, params, args)
        pending[engines[i % len(engines)].generate_responses.remote(**request)] = record
        while pending and (len(pending) >= window or i == len(records) - 1):
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            record, samples = pending.pop(ref), ray.get(ref)
            if any(sample["extra_logs"].get("video_failed") for sample in samples):
                yield record, [], f"{record['video']}: the engine could not read the video (see its log)"
                continue
            texts = []
            for sample in samples:
                start, end = sample["action_ranges"][0]
                texts.append(
                    processor.tokenizer.decode(sample["observation_tokens"][start:end], skip_special_tokens=True)
                )
            yield record, texts, None


# ---------------------------------------------------------------- report
def write_report(
    out_dir: Path, records: list[dict], all_stats: list[dict], kept: set[str], thresholds: dict, skipped: int = 0
) -> dict:
    """kept.jsonl + kept.yaml (ready for training), summary.json and spread_hist.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Video paths as absolute ones: the config's video_root was relative to where select ran.
    with open(out_dir / "kept.jsonl", "w") as f:
        f.writelines(json.dumps({**r, "video": os.path.abspath(r["video"])}) + "\n" for r in records if r["id"] in kept)
    (out_dir / "kept.yaml").write_text("datasets:\n  - path: kept.jsonl\n    format: records\n")

    total, kept_by = Counter(), Counter()
    for s in all_stats:
        for key in (f"task:{s['task']}", f"source:{s['source']}"):
            total[key] += 1
            kept_by[key] += s["id"] in kept
    scored = [s for s in all_stats if not s.get("error")]
    summary = {
        "records": len(all_stats),
        "kept": len(kept),
        "failed": len(all_stats) - len(scored),
        "skipped_bad_records": skipped,
        "std_threshold": {task or "default": value for task, value in thresholds.items()},
        "zero_variance_groups": sum(s["reward_std"] == 0.0 for s in scored),
        "kept_per_group": {key: f"{kept_by[key]}/{n}" for key, n in sorted(total.items())},
        "reward_mean_histogram": _histogram([s["reward_mean"] for s in scored], 0.0, 1.0),
        "reward_std_histogram": _histogram([s["reward_std"] for s in scored], 0.0, MAX_SPREAD),
        "spread_histogram": _histogram([spread(s) for s in scored], 0.0, MAX_SPREAD),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    plot_spread(ax, all_stats, summary["std_threshold"])
    ax.set_title(f"kept {len(kept)} of {len(all_stats)} records (discrete: 0 < mean < 1)")
    fig.tight_layout()
    fig.savefig(out_dir / "spread_hist.png", dpi=100)
    plt.close(fig)
    return summary


def plot_spread(ax, all_stats: list[dict], thresholds: dict, bins: int = 24) -> None:
    """The spread histogram, stacked by task, with the IoU std thresholds ({"default" or task:
    value}, as in summary.json) marked; drawn here and in the demo's report."""
    scored = [s for s in all_stats if not s.get("error")]
    tasks = sorted({s["task"] for s in scored})
    if tasks:
        ax.hist(
            [[spread(s) for s in scored if s["task"] == t] for t in tasks],
            bins=bins,
            range=(0, MAX_SPREAD),
            stacked=True,
            label=tasks,
        )
    for task, value in thresholds.items():
        ax.axvline(
            value,
            color="black",
            linestyle="--",
            label=f"IoU std threshold{'' if task == 'default' else f' ({task})'} {value}",
        )
    ax.set_xlabel("reward spread over K rollouts (std of accuracy or IoU)")
    ax.set_ylabel("records")
    ax.legend(fontsize=8)


def _histogram(values, low, high, bins=10):
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - low) / (high - low) * bins)))] += 1
    return {"edges": [round(low + (high - low) * i / bins, 6) for i in range(bins + 1)], "counts": counts}


# ---------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="openrlhf-video select",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="YAML data config of the candidate records")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--policy", help="model directory to roll out (the starting policy)")
    source.add_argument("--rollouts", help='JSONL of {"id", "response"}, K lines per record: select without a model')
    p.add_argument("--out", required=True, help="output directory (a rerun into it resumes)")
    p.add_argument("--k", type=int, default=8, help="rollouts per record (at least 2; with --rollouts, the file's)")
    p.add_argument("--std-threshold", action="append", default=[], metavar="[TASK=]STD",
                   help=f"minimum IoU std for continuous tasks (default {DEFAULT_STD_THRESHOLD}); repeat as tvg=0.15 per task")  # fmt: skip
    p.add_argument("--budget", type=int, help="keep at most this many records, highest spread first")
    p.add_argument("--no-think", dest="think", action="store_false", help="no-think prompts and format reward")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--max-len", type=int, default=8192, help="prompt + response tokens (vLLM max_model_len)")
    p.add_argument("--fps", type=float, default=float(os.environ.get("OPENRLHF_VIDEO_FPS", "2.0")))
    p.add_argument(
        "--total-pixels", type=int, default=int(os.environ.get("OPENRLHF_VIDEO_TOTAL_PIXELS", str(2048 * 28 * 28)))
    )
    p.add_argument("--engine", choices=("local", "ray"),
                   help="local: vLLM in this process (default without CUDA); ray: OpenRLHF's engines on every GPU of the Ray cluster")  # fmt: skip
    p.add_argument(
        "--num-engines", type=int, help="ray: engines to start (default: cluster GPUs / tensor parallel size)"
    )
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16, help="local: records per vLLM call")
    p.add_argument(
        "--skip-bad",
        type=int,
        default=0,
        help="skip (and count) up to N bad records, videos not found included, instead of failing",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return select(args)
    except DataError as e:
        print(f"openrlhf-video select: {e}", file=sys.stderr)
        return 2


def without_missing_videos(records: list[dict], args, skips: Skips) -> list[dict]:
    """The records whose video file exists. Missing ones (a wrong video_root, most often) stop the
    run, listing the first few, unless --skip-bad allows that many: then they are counted skips."""
    found = [os.path.isfile(r["video"]) for r in records]
    missing = [r for r, ok in zip(records, found) if not ok]
    if len(skips.problems) + len(missing) > args.skip_bad:
        first = "; ".join(f"{r['id']}: {r['video']}" for r in missing[:3])
        raise DataError(
            f"{args.data}: {len(missing)} of {len(records)} records have no video file (first: {first}); "
            f"check the datasets' video_root, or pass --skip-bad {len(skips.problems) + len(missing)} to select without them"
        )
    for record in missing:
        skips(DataError(f"{args.data}: record {record['id']!r}: video {record['video']} not found"))
    return [r for r, ok in zip(records, found) if ok]


def select(args) -> int:
    if args.k < 2:
        raise DataError(f"--k {args.k}: selection compares rollouts, it needs at least 2")
    for flag in ("max_new_tokens", "batch_size", "tensor_parallel_size"):
        if getattr(args, flag) < 1:
            raise DataError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    if not args.temperature >= 0:
        raise DataError(f"--temperature {args.temperature}: must be 0 or more")
    if args.budget is not None and args.budget < 0:
        raise DataError(f"--budget {args.budget}: a number of records, at least 0")
    thresholds = parse_thresholds(args.std_threshold)
    skips = Skips(args.skip_bad)
    records = load_config(args.data, skips=skips)
    if not args.rollouts:  # found before any model loads, not as one warning among vLLM's
        records = without_missing_videos(records, args, skips)
    seen = Counter(r["id"] for r in records)
    duplicates = [i for i, n in seen.items() if n > 1]
    if duplicates:
        raise DataError(
            f"{args.data}: record ids must be unique (results are resumed by id); repeated: {duplicates[:5]}"
        )

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Closed on return, not when this frame is freed: the first plot's imports (write_report) keep
    # a caught exception whose traceback holds the frame in a reference cycle, so until the
    # garbage collector came by, a second run in the same process (a notebook, the tests) was refused.
    with open(out_dir / ".select.lock", "w") as lock:
        try:  # two runs appending to one stats file would duplicate records
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{out_dir}: another select run is writing here") from None

        stats_path = out_dir / "stats.jsonl"
        finished = read_finished(stats_path)
        todo = [r for r in records if r["id"] not in finished]
        if todo:
            if args.rollouts:
                source = file_rollouts(todo, args.rollouts)
            else:
                import torch

                engine = args.engine or ("ray" if torch.cuda.is_available() else "local")
                source = (ray_rollouts if engine == "ray" else local_rollouts)(todo, args)
            failed = 0
            # Each line is flushed at once: the OS keeps it even if this process is SIGKILLed. fsync
            # (which only guards against a machine crash) runs at most once a second: per line it
            # costs ~3 ms, which would dominate a --rollouts run.
            with (
                open(stats_path, "a") as stats_file,
                progress(total=len(records), initial=len(records) - len(todo), desc="select", unit="record") as bar,
            ):
                synced = time.monotonic()
                for record, responses, error in source:
                    if error:
                        failed += 1
                        logger.warning("record %s has no rollouts (%d so far): %s", record["id"], failed, error)
                        stats = {
                            "id": record["id"],
                            "task": record["task"],
                            "source": record.get("source"),
                            "k": 0,
                            "error": error,
                        }
                    else:
                        stats = record_stats(record, responses, think=args.think)
                    stats_file.write(json.dumps(stats) + "\n")
                    stats_file.flush()
                    if time.monotonic() - synced > 1.0:
                        os.fsync(stats_file.fileno())
                        synced = time.monotonic()
                    finished[record["id"]] = stats
                    bar.update()
                os.fsync(stats_file.fileno())

        all_stats = [finished[r["id"]] for r in records]
        kept = choose(all_stats, thresholds, args.budget)
        summary = write_report(out_dir, records, all_stats, kept, thresholds, skipped=len(skips.problems))
        print(f"kept {summary['kept']} of {summary['records']} records ({summary['failed']} without rollouts, "
              f"{summary['zero_variance_groups']} zero-variance groups) -> {out_dir / 'kept.yaml'}")  # fmt: skip
        return 0
