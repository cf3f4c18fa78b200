"""Synthetic videos with a known event, and matching records: ground truth the tests can check.

A clip shows dim noise (or a panning scene), plus a coloured square only while
`start <= t <= end`. The records ask when the square appears (tvg), which colour it is (mcq,
oeqa), or both (gqa), in the DESIGN.md schema with times in seconds. Everything is deterministic
given the seed and cached on disk.
"""

import json
import os
import random
from fractions import Fraction
from pathlib import Path

import numpy as np

from openrlhf_video.progress import progress

VERSION = 3  # bump when the pictures change, so cached files are rebuilt
COLORS = {
    "red": (220, 30, 30), "green": (30, 200, 30), "blue": (40, 60, 230), "yellow": (230, 220, 30),
    "purple": (150, 40, 200), "cyan": (30, 210, 220), "white": (240, 240, 240), "orange": (240, 140, 20),
}  # fmt: skip


def make_video(
    path,
    *,
    duration=8.0,
    fps=10,
    size=(160, 96),
    event=(2.0, 5.0),
    color="red",
    seed=0,
    background="noise",
    square=0.5,
) -> Path:
    """Write an H.264 MP4 of `duration` s at `fps` (size = (width, height)) whose coloured square is
    visible exactly on the frames with start <= t <= end. Skipped when `path` already holds a
    clip made with the same parameters (they are stored in the file's comment tag).

    `background`: "noise" (dim per-frame noise, all P-frames: the worst case for a decoder) or
    "panning" (a textured scene the camera pans over, with film grain, encoded with x264's defaults:
    B-frames and ~0.85 Mbit/s at 640x360, what ordinary footage costs to decode).
    `square`: its side as a fraction of the frame's shorter side (1.0: a full-height square)."""
    import av

    path = Path(path)
    width, height = size
    start, end = event
    n_frames = round(duration * fps)
    if color not in COLORS:
        raise ValueError(f"{path}: unknown color {color!r}; expected one of {sorted(COLORS)}")
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ValueError(f"{path}: size {size} must be even and at least 32x32 (H.264 4:2:0)")
    if n_frames < 1 or not 0 <= start < end <= duration:
        raise ValueError(f"{path}: event {event} must satisfy 0 <= start < end <= duration ({duration})")
    if background not in ("noise", "panning"):
        raise ValueError(f"{path}: unknown background {background!r}; expected 'noise' or 'panning'")
    params = dict(version=VERSION, duration=duration, fps=fps, size=list(size), event=list(event),
                  color=color, seed=seed)  # fmt: skip
    if background != "noise":  # only then, so clips made before this option stay cached
        params["background"] = background
    if square != 0.5:
        params["square"] = square
    params = json.dumps(params, sort_keys=True)
    if path.exists():
        try:
            with av.open(str(path)) as container:
                if container.metadata.get("comment") == params:
                    return path
        except (OSError, av.error.FFmpegError):
            pass  # unreadable (e.g. a half-copied file): rebuild it

    rng = np.random.default_rng(seed)
    if not 0 < square <= 1:
        raise ValueError(f"{path}: square {square} must be a fraction of the frame in (0, 1]")
    side = max(1, round(min(width, height) * square)) if square != 0.5 else min(width, height) // 2
    x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    if background == "panning":
        from PIL import Image

        # Colour blobs at three scales on a canvas twice the frame size; each frame is a window
        # that glides over it. Coarse to fine weights keep it smooth like a natural scene.
        def blobs(cell):
            seeds = rng.integers(0, 256, (2 * height // cell + 2, 2 * width // cell + 2, 3), dtype=np.uint8)
            return np.asarray(Image.fromarray(seeds).resize((2 * width, 2 * height), Image.BICUBIC))

        scene = (blobs(48) // 2 + blobs(12) // 3 + blobs(2) // 6).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    with av.open(str(tmp), "w") as container:
        container.metadata["comment"] = params
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Lossless (qp 0): lossy x264 decoded to other pixels from run to run once torch was loaded
        # (even with one thread; 2 of 12 clips), so a seeded run's data did not reproduce.
        stream.options = {"qp": "0", "preset": "veryfast"} if background == "noise" else {}
        # PyAV's default (slice threads) has x264 cut each picture into one slice per core, which
        # a decoder can spread over cores; ordinary footage (ffmpeg's CLI) has one slice per picture.
        stream.thread_type = "FRAME"
        for i in range(n_frames):
            if background == "noise":  # dim noise: not flat, not the shape
                frame = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
            else:
                x = round(width / 2 * (1 + np.sin(0.5 * i / fps)))
                y = round(height / 2 * (1 + np.sin(0.37 * i / fps + 1)))
                grain = rng.integers(-10, 11, (height, width, 3), dtype=np.int16)
                frame = np.clip(scene[y : y + height, x : x + width] + grain, 0, 255).astype(np.uint8)
            if start <= i / fps <= end:
                frame[y0 : y0 + side, x0 : x0 + side] = COLORS[color]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return path


def make_synthetic_dataset(
    out_dir,
    *,
    n_videos=8,
    seed=0,
    colors=None,
    square=0.5,
    tasks=None,
    duration: float | None = None,
    whole_clip: bool = False,
) -> Path:
    """Write `videos/clip_XXX.mp4` and `records.jsonl` (tvg, mcq, gqa and oeqa records for every
    clip, or those of `tasks`; 6-12 s clips at 10 fps, or all `duration` s long, varied spans and
    colours, drawn from `colors`, default all eight). Returns `out_dir`, which is the records' video_root (their
    `video` paths are relative to it). `whole_clip`: the square shows from the first frame to the last
    (the span is still drawn, so a seed gives the same colours either way)."""
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    records = []
    for k in progress(range(n_videos), desc="synthetic videos"):
        drawn = rng.randrange(60, 121) / 10  # 0.1 s steps, so duration * fps frames exactly
        clip_s = drawn if duration is None else duration
        length = rng.randrange(15, int(clip_s * 5) + 1) / 10  # 1.5 s up to half the clip
        start = rng.randrange(0, int((clip_s - length) * 10) + 1) / 10
        span = [0.0, clip_s] if whole_clip else [start, round(start + length, 1)]
        color = rng.choice(sorted(colors or COLORS))
        options = rng.sample([c for c in sorted(colors or COLORS) if c != color], min(3, len(colors or COLORS) - 1))
        options += [color]
        rng.shuffle(options)
        letter = "ABCD"[options.index(color)]
        video = f"videos/clip_{k:03d}.mp4"
        make_video(out_dir / video, duration=clip_s, event=tuple(span), color=color, seed=seed * 1000 + k,
                   square=square)  # fmt: skip
        common = dict(video=video, duration=clip_s, clip=None, source="synthetic")
        records += [
            dict(id=f"synthetic/clip_{k:03d}#tvg", task="tvg", question=f"When does the {color} square appear?",
                 options=None, answer=None, span=span, **common),
            dict(id=f"synthetic/clip_{k:03d}#mcq", task="mcq", question="Which colour is the square that appears?",
                 options=options, answer=letter, span=None, **common),
            dict(id=f"synthetic/clip_{k:03d}#gqa", task="gqa", question="Which colour is the square, and when is it visible?",
                 options=options, answer=letter, span=span, **common),
            dict(id=f"synthetic/clip_{k:03d}#oeqa", task="oeqa", question="What colour is the square? Answer with one word.",
                 options=None, answer=color, span=None, **common),
        ]  # fmt: skip
    if tasks is not None:
        records = [r for r in records if r["task"] in tasks]
    text = "".join(json.dumps(r) + "\n" for r in records)
    jsonl = out_dir / "records.jsonl"
    if not jsonl.exists() or jsonl.read_text() != text:
        tmp = jsonl.with_name(f".records.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, jsonl)
    return out_dir
