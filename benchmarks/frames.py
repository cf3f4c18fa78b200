"""Time to model-ready frames: our pipeline cold and warm (cache) against qwen-vl-utils `fetch_video`.

    python benchmarks/frames.py [--repeats 5] [--plot frames.png]

Makes a 30 s and a 120 s 640x360 30 fps H.264 clip (openrlhf_video.synthetic, cached), then takes
the median of `--repeats` runs of each method under Temporal-R1's budget (2 fps, <= 768 frames,
total_pixels 2048*28*28, min_pixels 4*28*28). Cold runs start from an empty cache each time, so
they include writing the entry. Targets: cold <= 1/3 of fetch_video, warm <= 1/20.

Cold is bounded by decoding: H.264 P-frames depend on the frames before them, so every method
decodes every frame up to the last sampled one (make_video's clips are all P-frames after each
keyframe, and their per-frame noise, ~11 Mbit/s, makes decoding most of fetch_video's time too).
CPU seconds are printed beside wall seconds because the machines this runs on are often shared.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

# qwen-vl-utils picks torchcodec when it is importable; on CPU machines that build cannot load.
os.environ.setdefault("FORCE_QWENVL_VIDEO_READER", "decord")

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
    parser.add_argument("--plot", help="write a bar chart (PNG) of the timings here")
    args = parser.parse_args()

    from qwen_vl_utils import fetch_video

    workdir = Path(args.workdir)
    clips = {
        f"{seconds} s": make_video(workdir / f"clip_{seconds}s.mp4", duration=seconds, fps=30, size=(640, 360),
                                   event=(seconds / 3, seconds / 2), seed=seconds)  # fmt: skip
        for seconds in (30, 120)
    }
    results = {}
    for name, path in clips.items():
        warm_cache = workdir / "cache"
        first = load_frames(path, cache_dir=warm_cache, **BUDGET)  # fills the warm cache; also the shape
        theirs = fetch_video({"video": str(path), **BUDGET})
        assert theirs.shape[0] == len(first.frames) and tuple(theirs.shape[2:]) == first.frames.shape[1:3]

        def cold(backend="auto"):
            with tempfile.TemporaryDirectory(dir=workdir) as empty:
                load_frames(path, cache_dir=empty, backend=backend, **BUDGET)

        methods = {
            "fetch_video": lambda: fetch_video({"video": str(path), **BUDGET}),
            "ours cold": cold,
            "ours cold (PyAV)": lambda: cold("pyav"),
            "ours warm": lambda: load_frames(path, cache_dir=warm_cache, **BUDGET),
        }
        results[name] = median_seconds(methods, args.repeats)
        t, h, w, _ = first.frames.shape
        print(f"\n{name} clip: {t} frames of {h}x{w}, sampled at {first.fps:.3f} fps (median of {args.repeats})")
        (base_wall, base_cpu) = results[name]["fetch_video"]
        print(f"  {'method':<18} {'wall ms':>9} {'x fetch':>8} {'CPU ms':>9} {'x fetch':>8}")
        for method, (wall, cpu) in results[name].items():
            print(f"  {method:<18} {wall * 1000:9.1f} {wall / base_wall:8.3f} {cpu * 1000:9.1f} {cpu / base_cpu:8.3f}")
        for method, target in (("ours cold", 1 / 3), ("ours warm", 1 / 20)):
            ratio = results[name][method][0] / base_wall
            print(f"  target {method} <= {target:.3f} x fetch_video (wall): {'met' if ratio <= target else 'MISSED'} ({ratio:.3f})")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        methods = list(next(iter(results.values())))
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / len(methods)
        for i, method in enumerate(methods):
            walls = [r[method][0] for r in results.values()]
            ax.bar([k + i * width for k in range(len(results))], walls, width, label=method)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(results))], [f"{n} clip" for n in results])
        ax.set_yscale("log")  # the warm cache is ~1000x below the rest
        ax.set_ylabel("wall seconds (median, log)")
        ax.set_title("Model-ready frames, 640x360 H.264, Temporal-R1 budget")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
