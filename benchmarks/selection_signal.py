"""Does variance-aware selection pick groups that carry signal? Evidence on CPU.

Tiny Qwen2.5-VL, warm-started on synthetic videos' answers, then `openrlhf-video select` with K
rollouts per record. Then, as GRPO would, a training batch is drawn from the selected set and
one from the unselected pool, each record is rolled out K times afresh (another seed), and we
print the fraction of zero-variance groups (all K rewards equal: no advantage, no gradient).

    python benchmarks/selection_signal.py [--videos 16] [--k 8] [--batch 16] [--work DIR]
"""

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its CPU worker warns at every set_num_threads call

from openrlhf_video import select
from openrlhf_video.data import load_config
from openrlhf_video.synthetic import make_synthetic_dataset
from openrlhf_video.tiny_model import build_tiny_qwen25vl
from openrlhf_video.warm_start import warm_start


def write_config(path: Path, records: list[dict]) -> Path:
    (path.parent / f"{path.stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    path.write_text(f"datasets:\n  - path: {path.stem}.jsonl\n    format: records\n")
    return path


def zero_variance(stats: list[dict]) -> tuple[float, float]:
    """Fractions of groups whose total reward, and whose task signal (accuracy/IoU), never varies."""
    flat_reward = sum(s["reward_std"] == 0 for s in stats) / len(stats)
    flat_signal = sum(select.spread(s) == 0 for s in stats) / len(stats)
    return flat_reward, flat_signal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=16, help="synthetic clips (4 records each)")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=32, help="records per training batch")
    p.add_argument("--warm-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3, help="fresh rollouts of each batch, one per seed")
    p.add_argument("--no-think", dest="think", action="store_false", help="no-think prompts, answers and format")
    p.add_argument("--work", help="working directory (default: a temporary one)")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="selection-signal-"))
    common = ["--k", str(args.k), "--max-new-tokens", "96", "--max-len", "2048", "--fps", "1.0",
              "--total-pixels", str(64 * 28 * 28 * 4), "--batch-size", "32", *([] if args.think else ["--no-think"])]  # fmt: skip

    data = make_synthetic_dataset(work / "synthetic", n_videos=args.videos, seed=0)
    config = data / "data.yaml"
    config.write_text("datasets:\n  - path: records.jsonl\n    format: records\n    video_root: .\n")
    records = load_config(config)
    policy = work / "policy"
    if not (policy / "config.json").exists():
        warm_start(build_tiny_qwen25vl(), records, policy, steps=args.warm_steps, seed=0, think=args.think)

    for old in [work / "select", *work.glob("fresh_seed*")]:  # the warm-started policy is reused, rollouts are not
        shutil.rmtree(old, ignore_errors=True)
    start = time.perf_counter()
    assert select.main(["--data", str(config), "--policy", str(policy), "--out", str(work / "select"), *common]) == 0
    seconds = time.perf_counter() - start
    kept = {r["id"] for r in load_config(work / "select" / "kept.yaml")}
    pool = [r for r in records if r["id"] not in kept]
    chosen = [r for r in records if r["id"] in kept]
    batch = min(args.batch, len(chosen), len(pool))
    if batch == 0:
        raise SystemExit(f"nothing to compare: {len(chosen)} selected, {len(pool)} unselected records")
    rng = random.Random(1)
    batches = {"selected": rng.sample(chosen, batch), "unselected": rng.sample(pool, batch)}

    # Fresh rollouts of both batches with other seeds: what training would see. A tiny model's
    # successes are rare and noisy, so each batch is rolled out with several seeds.
    fresh = write_config(work / "batches.yaml", batches["selected"] + batches["unselected"])
    flat = {name: [] for name in batches}
    for seed in range(1, args.seeds + 1):
        out = work / f"fresh_seed{seed}"
        assert (
            select.main(
                ["--data", str(fresh), "--policy", str(policy), "--out", str(out), "--seed", str(seed), *common]
            )
            == 0
        )
        fresh_stats = {
            json.loads(line)["id"]: json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()
        }
        for name, drawn in batches.items():
            flat[name].append(zero_variance([fresh_stats[r["id"]] for r in drawn]))

    print(f"\nselection: kept {len(kept)} of {len(records)} records, K={args.k}, {seconds:.1f} s "
          f"({seconds / len(records):.2f} s per record with vLLM's CPU build, its start-up and cold frame decoding included)")  # fmt: skip
    print(
        f"training batches of {batch} records, rolled out again with K={args.k}, seeds 1-{args.seeds} (mean, per seed):"
    )
    for name, fractions in flat.items():
        by_reward, by_signal = ([f[i] for f in fractions] for i in (0, 1))
        print(f"  from the {name:<10} set: zero-variance groups {sum(by_reward) / len(by_reward):.0%} by total reward "
              f"{[f'{f:.0%}' for f in by_reward]}, {sum(by_signal) / len(by_signal):.0%} by task signal (accuracy/IoU) "
              f"{[f'{f:.0%}' for f in by_signal]}")  # fmt: skip
    print(f"outputs: {work / 'select'} (summary.json, spread_hist.png)")


if __name__ == "__main__":
    main()
