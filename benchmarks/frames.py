"""Time to model-ready frames: our pipeline cold and warm (cache) against qwen-vl-utils `fetch_video`.

    python benchmarks/frames.py [--repeats 5] [--background panning|noise] [--plot frames.png]

Makes a 30 s and a 120 s 640x360 30 fps H.264 clip (openrlhf_video.synthetic, cached), then takes
the median of `--repeats` runs of each method under Temporal-R1's budget (2 fps, <= 768 frames,
total_pixels 2048*28*28, min_pixels 4*28*28). Cold runs start from an empty cache each time, so
they include writing the entry. Targets: cold <= 1/3 of fetch_video, warm <= 1/20.

The default clips pan over a textured scene with grain, encoded with x264's defaults (B-frames,
~0.85 Mbit/s) like ordinary footage; `--background noise` gives the worst case, per-frame noise,
lossless (~46 Mbit/s, no B-frames), where decoding every frame is nearly all of everyone's time.
CPU seconds (all threads of this process) are printed beside wall seconds because the machines
this runs on are often shared; MAD is the mean absolute difference from fetch_video's pixels.
"ours cold, 1 thread" is ours with OPENRLHF_VIDEO_DECODE_THREADS=1: what sharing the keyframe
runs among one decoder per core buys on this machine.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# qwen-vl-utils picks torchcodec when it is importable; on CPU machines that build cannot load.
os.environ.setdefault("FORCE_QWENVL_VIDEO_READER", "decord")

from openrlhf_video.data import frames  # noqa: E402
from openrlhf_video.data.frames import load_frames  # noqa: E402
from openrlhf_video.synthetic import make_video  # noqa: E402

BUDGET = dict(fps=2.0, max_frames=768, total_pixels=2048 * 28 * 28, min_pixels=4 * 28 * 28)


def median_seconds(methods: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds (all threads of this process) per method. Repeats are
    interleaved, so a burst of load from other processes hits every method alike; the CPU time is
    the steadier measure of the work on a shared machine, the wall time what a trainer waits."""
    walls, cpus = {name: [] for name in methods}, {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "openrlhf-video-bench"))
    parser.add_argument("--background", choices=("panning", "noise"), default="panning")
    parser.add_argument("--plot", help="write a bar chart (PNG) of the timings here")
    args = parser.parse_args()

    from qwen_vl_utils import fetch_video

    workdir = Path(args.workdir)
    clips = {}
    for seconds in (30, 120):
        print(f"{seconds} s clip: encoding it unless {workdir} has it already", flush=True)
        clips[f"{seconds} s"] = make_video(workdir / f"clip_{seconds}s_{args.background}.mp4", duration=seconds, fps=30,
                                           size=(640, 360), event=(seconds / 3, seconds / 2), seed=seconds,
                                           background=args.background)  # fmt: skip
    results = {}
    for name, path in clips.items():
        warm_cache = workdir / "cache"
        ours = load_frames(path, cache_dir=warm_cache, **BUDGET)  # fills the warm cache
        theirs = fetch_video({"video": str(path), **BUDGET}).permute(0, 2, 3, 1).numpy()  # (T, H, W, C) float
        assert theirs.shape == ours.frames.shape, (theirs.shape, ours.frames.shape)
        decord_frames = load_frames(path, cache_dir=None, backend="decord", **BUDGET).frames

        def cold(backend="auto", threads=frames.DECODE_THREADS):
            default, frames.DECODE_THREADS = frames.DECODE_THREADS, threads
            try:
                with tempfile.TemporaryDirectory(dir=workdir) as empty:
                    load_frames(path, cache_dir=empty, backend=backend, **BUDGET)
            finally:
                frames.DECODE_THREADS = default

        methods = {
            "fetch_video": lambda: fetch_video({"video": str(path), **BUDGET}),
            "ours cold": cold,
            "ours cold, 1 thread": lambda: cold(threads=1),
            "ours cold (decord)": lambda: cold("decord"),
            "ours warm": lambda: load_frames(path, cache_dir=warm_cache, **BUDGET),
        }
        results[name] = median_seconds(methods, args.repeats)
        t, h, w, _ = ours.frames.shape
        mbits = path.stat().st_size * 8 / float(name.split()[0]) / 1e6
        print(f"\n{name} clip ({mbits:.2f} Mbit/s): {t} frames of {h}x{w}, sampled at {ours.fps:.3f} fps "
              f"(median of {args.repeats}; {frames.DECODE_THREADS} decoder threads)")  # fmt: skip
        print(f"  MAD vs fetch_video (0-255): ours {np.abs(ours.frames - theirs).mean():.2f}, "
              f"ours (decord) {np.abs(decord_frames - theirs).mean():.2f}")  # fmt: skip
        (base_wall, base_cpu) = results[name]["fetch_video"]
        print(f"  {'method':<20} {'wall ms':>9} {'x fetch':>8} {'CPU ms':>9} {'x fetch':>8}")
        for method, (wall, cpu) in results[name].items():
            print(f"  {method:<20} {wall * 1000:9.1f} {wall / base_wall:8.3f} {cpu * 1000:9.1f} {cpu / base_cpu:8.3f}")
        for method, target in (("ours cold", 1 / 3), ("ours warm", 1 / 20)):
            wall, cpu = results[name][method][0] / base_wall, results[name][method][1] / base_cpu
            verdict = "met" if wall <= target else "MISSED"
            print(f"  target {method} <= {target:.3f} x fetch_video (wall): {verdict} (wall {wall:.3f}, CPU {cpu:.3f})")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        methods = list(next(iter(results.values())))
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        width = 0.8 / len(methods)
        for column, (ax, measure) in enumerate(zip(axes, ("wall", "CPU"))):
            for i, method in enumerate(methods):
                seconds = [r[method][column] for r in results.values()]
                ax.bar([k + i * width for k in range(len(results))], seconds, width, label=method)
            ax.set_xticks([k + 0.4 - width / 2 for k in range(len(results))], [f"{n} clip" for n in results])
            ax.set_yscale("log")  # the warm cache is ~1000x below the rest
            ax.set_title(f"{measure} seconds (median)")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(methods))
        fig.suptitle(f"Model-ready frames, 640x360 H.264 ({args.background}), Temporal-R1 budget")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        fig.savefig(args.plot, dpi=120)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
