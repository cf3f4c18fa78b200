"""The frame pipeline shared by training, selection and the demo: video file -> model-ready frames.

Sampling and sizing follow qwen-vl-utils' `fetch_video` (its `smart_nframes`, frame range and
`smart_resize`, Temporal-R1's budget as defaults), so a model sees what it saw in Qwen's own
recipes, except that a sampled index is a time: at a variable frame rate the frame is the picture
on screen then, not the index-th picture. Frames are decoded straight to the target size (PyAV
first, decord when PyAV is missing or fails) and cached on disk, so a second epoch or another
rollout reads them back. Video stored sideways (phones) is turned upright by the quarter turn its
display matrix gives, as decord shows MP4 and MOV. PyAV decodes the runs between keyframes on
DECODE_THREADS decoders at once, and never decodes the H.264 pictures that no other picture
refers to unless they are sampled.
"""

import contextlib
import hashlib
import itertools
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openrlhf_video.data.records import DataError

logger = logging.getLogger(__name__)

PATCH_FACTOR = 28  # Qwen2.5-VL: patch 14 x spatial merge 2
# Frame rates that the millisecond timestamps of MKV, WebM and FLV only approximate.
STANDARD_RATES = (24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 48.0, 50.0, 60000 / 1001, 60.0, 120.0)
CACHE_VERSION = 8  # bump when the sampling, the pixels or the stored layout change
DEFAULT_CACHE_DIR = os.environ.get("OPENRLHF_VIDEO_FRAME_CACHE") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openrlhf-video" / "frames"
)
DEFAULT_CACHE_MAX_BYTES = int(float(os.environ.get("OPENRLHF_VIDEO_FRAME_CACHE_GB", 20)) * 2**30)
# Decoded pictures (YUV) waiting for a thread to convert them, per video (see _read_pyav).
BACKLOG_BYTES = 128 * 2**20
# Decoders per video (PyAV); lower it where many videos are decoded at once (dataloader workers).
DECODE_THREADS = int(os.environ.get("OPENRLHF_VIDEO_DECODE_THREADS") or
                     (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))  # fmt: skip


@dataclass
class VideoFrames:
    """Sampled, resized frames of one video and the times they were taken at."""

    frames: np.ndarray  # (T, H, W, 3) uint8; T even, H and W multiples of 28
    frames_indices: np.ndarray  # (T,) indices into the whole video at video_fps (times: index / video_fps)
    timestamps: np.ndarray  # (T,) seconds in the whole video's time (a clip does not shift them)
    fps: float  # the real sampled rate: T / frames in the sampled range * video_fps
    video_fps: float
    total_num_frames: int  # of the whole video
    duration: float  # of the whole video, seconds
    range_start: int  # first frame of the sampled range (the clip's, else 0)
    range_frames: int  # frames in the sampled range
    backend: str  # "decord", "pyav" or "cache"

    def metadata(self) -> dict:
        """Video metadata for vLLM (`multi_modal_data={"video": [(frames, metadata)]}`) and,
        without its `do_sample_frames` key, for the HF processor (`video_metadata=[...]`,
        `do_sample_frames=False`): the frames are already sampled.

        It describes the sampled range (the clip, or the whole video), so the processor's
        `sampled_fps` = len(frames_indices) / total_num_frames * fps equals `self.fps`, and its
        `second_per_grid_ts` = temporal_patch_size / self.fps: the model's time axis starts at
        the first sampled frame.
        """
        return {
            "fps": self.video_fps,
            "duration": self.range_frames / self.video_fps,
            "total_num_frames": self.range_frames,
            "frames_indices": (self.frames_indices - self.range_start).tolist(),
            "do_sample_frames": False,
        }


def load_frames(
    video_path,
    *,
    clip=None,
    fps: float = 2.0,
    min_frames: int = 4,
    max_frames: int = 768,
    total_pixels: int = 2048 * 28 * 28,
    min_pixels: int = 4 * 28 * 28,
    max_pixels: int = 768 * 28 * 28,
    backend: str = "auto",
    cache_dir=DEFAULT_CACHE_DIR,
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
) -> VideoFrames:
    """Frames sampled at `fps` (within [min_frames, max_frames], even), each resized to the largest
    multiple-of-28 size that keeps all frames within `total_pixels` (as qwen-vl-utils does).

    `clip` = [start_s, end_s] samples only that part. `backend`: "auto" (PyAV, then decord),
    "decord" or "pyav". `cache_dir=None` turns the cache off. A missing, unreadable or too-short
    video raises DataError naming the file.
    """
    if not video_path:  # a row without a video: one bad sample, not the end of a run
        raise DataError(f"no video given ({video_path!r})")
    path = Path(video_path)
    try:
        stat = path.stat()
    except OSError as e:
        raise DataError(f"{path}: video not readable ({e.strerror})") from None
    settings = dict(clip=list(clip) if clip else None, fps=fps, min_frames=min_frames, max_frames=max_frames,
                    total_pixels=total_pixels, min_pixels=min_pixels, max_pixels=max_pixels, backend=backend)  # fmt: skip
    cache_file = None
    if cache_dir is not None:
        key = json.dumps([CACHE_VERSION, str(path.resolve()), stat.st_size, stat.st_mtime_ns, settings])
        cache_file = Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()}.frames"
        cached = _cache_read(cache_file)
        if cached is not None:
            return cached

    # Imported here: qwen-vl-utils pulls in torch and torchvision (seconds), which `data check`
    # and a warm cache never need.
    from qwen_vl_utils.vision_process import calculate_video_frame_range, smart_nframes, smart_resize

    def plan(total_num_frames: int, video_fps: float, height: int, width: int):
        """Which frames to take and at what size; the same rule for every backend."""
        if total_num_frames < 1 or not video_fps > 0:
            raise DataError(f"{path}: no frames or no frame rate in the video stream")
        ele = {"fps": fps, "min_frames": min_frames, "max_frames": max_frames}
        try:
            if clip:
                ele.update(video_start=float(clip[0]), video_end=float(clip[1]))
            start, end, count = calculate_video_frame_range(ele, total_num_frames, video_fps)
            nframes = smart_nframes(ele, total_frames=count, video_fps=video_fps)
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: cannot sample frames (clip {clip}): {e}") from None
        indices = np.linspace(start, end, nframes).round().astype(np.int64)
        frame_pixels = max(min(max_pixels, total_pixels / nframes * 2), int(min_pixels * 1.05))
        size = smart_resize(height, width, PATCH_FACTOR, min_pixels=min_pixels, max_pixels=frame_pixels)
        return indices, size, start, count

    # PyAV first: it can leave out the H.264 pictures nothing refers to and converts only the
    # sampled frames, ~0.6 of decord's time on x264 video (benchmarks/frames.py); decord,
    # which must decode every frame, stays as the fallback for files PyAV cannot read.
    order = {"auto": ("pyav", "decord"), "decord": ("decord",), "pyav": ("pyav",)}[backend]
    errors = []
    for name in order:
        try:
            frames, indices, video_fps, total, start, count = _READERS[name](path, plan)
            break
        except DataError:
            raise  # the video itself is unusable (too short, no stream): another reader will not help
        except Exception as e:  # decoders raise anything from ImportError to RuntimeError
            errors.append(f"{name}: {type(e).__name__}: {e}")
            logger.info("%s: %s failed to decode (%s)", path, name, e)
    else:
        raise DataError(f"{path}: cannot decode the video ({'; '.join(errors)})")

    result = VideoFrames(
        frames=frames,
        frames_indices=indices,
        timestamps=indices / video_fps,
        fps=len(indices) / count * video_fps,
        video_fps=video_fps,
        total_num_frames=total,
        duration=total / video_fps,
        range_start=start,
        range_frames=count,
        backend=name,
    )
    if cache_file is not None:
        _cache_write(cache_file, result, cache_max_bytes)
    return result


def _read_decord(path: Path, plan):
    import decord
    from PIL import Image

    # decord turns its FFmpeg's error log on at import: lines upon lines per corrupt video ("[h264 @
    # 0x...] Invalid NAL unit size", "moov atom not found") where the DataError naming the file says
    # it once (PyAV 15 keeps its FFmpeg quiet by default). OPENRLHF_VIDEO_VERBOSE=1 shows them.
    if os.environ.get("OPENRLHF_VIDEO_VERBOSE") != "1":
        decord.logging.set_level(decord.logging.QUIET)
    reader = decord.VideoReader(str(path), num_threads=0)
    total, video_fps = len(reader), reader.get_avg_fps()
    height, width = reader[0].shape[:2]
    indices, (h, w), start, count = plan(total, video_fps, height, width)
    shown = reader.get_frame_timestamp(range(total))[:, 0]  # seconds, in display order
    # Decode at full size and scale only the wanted frames: decord's own scaling (width=,
    # height=) would scale every decoded frame, and for sparse sampling most are thrown away.
    frames = reader.get_batch(on_screen(shown - shown[0], indices, video_fps).tolist()).asnumpy()
    if (h, w) != (height, width):
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])
    return frames, indices, video_fps, total, start, count


def _read_pyav(path: Path, plan):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        video_fps = float(stream.average_rate or stream.guessed_rate or 0)
        total, read = stream.frames, _pictures(container, stream)
        first = next(read, None)
        read = itertools.chain([first] if first else [], read)
        read_all = not total or (first is not None and not first[3])
        if read_all:
            # MKV, WebM and MPEG-TS store no frame count, and an MP4 whose edit list hides pictures
            # (cut by stream copy between keyframes) counts them too: read every packet and take
            # the rate from their timestamps, the ones frames are matched to indices by.
            read = list(read)
            times = [pts for pts, _, _, shown in read if shown]
            total, video_fps = len(times), _rate_of(times, time_base, video_fps)
            _check_complete(path, times, time_base, video_fps, container, stream)
            read = iter(read)
        height, width = stream.codec_context.height, stream.codec_context.width
        # A decoded picture's bytes: 12 bits a pixel for 8-bit 4:2:0, 10-bit samples take 16; a
        # format PyAV does not name counts as the largest common one (16-bit 4:4:4).
        picture_bytes = height * width * getattr(stream.codec_context.format, "padded_bits_per_pixel", 48) // 8
        indices, size, start, count = plan(total, video_fps, height, width)
        t0 = (stream.start_time or 0) * time_base
        if start > 0 and not read_all:  # jump to the keyframe before the clip instead of reading up to it
            container.seek(int((t0 + start / video_fps) / time_base), stream=stream, backward=True)
            read = _pictures(container, stream)
        # One pass over the packets, no decoding (~15 ms for 2 min of 640x360 H.264), up to the
        # first keyframe shown after the last sampled time and the pictures shown before it:
        # every picture's timestamp, and the keyframes, where decoding can start.
        pts, keyframes, last_keyframe = [], [], -1
        for picture_pts, picture_dts, is_keyframe, shown in read:
            if last_keyframe > indices[-1] and picture_pts > keyframes[-1][0]:
                break
            if shown:
                pts.append(picture_pts)
            if is_keyframe:
                keyframes.append((picture_pts, picture_dts))
                last_keyframe = round((picture_pts * time_base - t0) * video_fps)
        else:  # read to the end: a copy cut short shows here (an MP4's index counts the pictures cut off)
            if not read_all:  # the read-all branch checked it above
                _check_complete(path, pts, time_base, video_fps, container, stream)
        pts = np.unique(pts)
        targets = pts[on_screen(pts * time_base - t0, indices, video_fps)]
        # AVI stores no presentation times: FFmpeg numbers its packets in decoding order, which
        # B-frames reorder, so there a pts is not when a picture is shown. The decoder still hands
        # pictures out in display order: the n-th one is picture n (AVI has a constant rate).
        in_decoding_order = container.format.name == "avi"
    if in_decoding_order:
        keyframes, targets = [], indices  # one decoder from the start, counting pictures
    # Each keyframe starts an independent run of pictures, so DECODE_THREADS decoders can take
    # a share of the runs each: 1.7-1.9x on two cores where FFmpeg's own frame threads give 1.1x
    # (benchmarks/frames.py). Shares are cut at keyframes, so no picture is decoded twice.
    run = np.searchsorted(
        [key_pts for key_pts, _ in keyframes], targets, side="right"
    )  # 1 + the keyframe a frame's run starts at
    run_starts = np.flatnonzero(np.diff(run)) + 1  # positions in `targets` where a new run begins
    cuts = sorted({int(run_starts[np.abs(run_starts - len(targets) * k / DECODE_THREADS).argmin()])
                   for k in range(1, DECODE_THREADS)}) if len(run_starts) else []  # fmt: skip
    shares = np.split(targets, cuts)
    starts = [keyframes[run[at] - 1] if run[at] else None for at in [0, *cuts]]
    # Fewer shares than threads (one keyframe, say): FFmpeg's frame threads use the rest.
    threads = DECODE_THREADS // len(shares)
    frames = np.empty((len(targets), *size, 3), np.uint8)
    # Runs differ in length (250, 250, 250 and 150 pictures at x264's default GOP), so one share
    # ends first: decoded pictures wait in a backlog, and a thread done with its share converts
    # them until every share is decoded, so the core that would idle takes the longer share's
    # conversions (0.93x wall on the 30 s clip). Capped, as a waiting picture is full-size YUV.
    backlog = queue.SimpleQueue()
    backlog_cap = BACKLOG_BYTES // picture_bytes if len(shares) > 1 else 0
    decoding, decoding_lock = [len(shares)], threading.Lock()

    def decode_share(share: np.ndarray, keyframe: tuple | None, out: np.ndarray) -> int:
        from av.video.reformatter import VideoReformatter

        # One swscale context per thread for all its frames (its filters are built once).
        to_rgb = VideoReformatter()
        try:
            for frame, row in zip(_decode_pyav(path, share, keyframe, threads=threads, by_order=in_decoding_order),
                                  out, strict=True):  # fmt: skip
                if backlog.qsize() < backlog_cap:
                    backlog.put((frame, row))
                else:
                    _to_rgb(to_rgb, frame, row)
        finally:  # the last share decoded (or failed) sends every thread out of the backlog
            with decoding_lock:
                decoding[0] -= 1
                if not decoding[0]:
                    for _ in shares:
                        backlog.put(None)
        for waiting in iter(backlog.get, None):
            _to_rgb(to_rgb, *waiting)
        return frame.rotation  # of the share's last picture (a share is never empty)

    with ThreadPoolExecutor(len(shares)) as pool:  # PyAV lets go of the GIL while decoding
        rotation = list(pool.map(decode_share, shares, starts, np.split(frames, cuts)))[0]
    # Phone video is stored sideways, with a display matrix saying how to turn it: decord (and so
    # fetch_video) shows it upright, and so do we. The size planned for the stored picture fits
    # the turned one, as smart_resize treats height and width alike.
    frames = np.ascontiguousarray(np.rot90(frames, _quarter_turns(rotation), axes=(1, 2)))
    return frames, indices, video_fps, total, start, count


def _quarter_turns(rotation: int) -> int:
    """Counterclockwise quarter turns for a display matrix's rotation (PyAV's `frame.rotation`,
    degrees). Only a quarter turn within a degree counts, as in decord: another angle, or a matrix
    FFmpeg reads no angle from (INT_MIN), leaves the picture as stored."""
    turns = round(rotation / 90)
    return turns if abs(rotation - 90 * turns) <= 1 else 0


def _pictures(container, stream):
    """(pts, dts, is keyframe, is shown) of each picture in decoding order, read without decoding.
    Not shown: the pictures an MP4 edit list cuts off (`ffmpeg -ss ... -c copy`), decoded only as
    references."""
    return (
        (p.pts, p.dts, p.is_keyframe, not p.is_discard) for p in container.demux(stream) if p.pts is not None and p.size
    )


def _check_complete(path: Path, times: list[int], time_base: float, video_fps: float, container, stream) -> None:
    """DataError when the pictures (pts `times`) end well before the duration the file declares:
    a copy cut short. Its frames would be sampled from the part that is left, silently, while
    spans stay on the whole video's time axis. Not judged where the video's own length is not
    declared (live MKV; a file with audio and only the file's duration, the longest stream's)."""
    start = (stream.start_time or 0) * time_base  # a stream's duration counts from its first picture
    if stream.duration:
        declared = float(stream.duration * stream.time_base)
    elif ":" in stream.metadata.get("DURATION", ""):  # Matroska's own length of the track, "00:01:02.5..."
        hours, minutes, seconds = stream.metadata["DURATION"].split(":")
        declared, start = int(hours) * 3600 + int(minutes) * 60 + float(seconds), 0.0
    elif len(container.streams) == 1:  # else the container's is the longest stream's: audio may run on
        declared, start = (container.duration or 0) / 1e6, 0.0
    else:
        return
    if declared and times and video_fps:
        covered = max(times) * time_base + 1 / video_fps - start
        if covered < declared - max(1.0, 0.05 * declared):
            raise DataError(
                f"{path}: truncated: its pictures cover {covered:.1f} s of the {declared:.1f} s it declares"
            )


def _rate_of(times: list[int], time_base: float, container_rate: float) -> float:
    """The frame rate of pictures shown at `times` (pts). Millisecond timestamps (MKV, WebM) skew
    FFmpeg's average rate (1000/33 for 30 fps) and this estimate a little (24.0008 for 24, which
    smart_nframes floors two frames short of 24's): a standard rate within 0.1 % is taken instead."""
    if len(times) < 2 or max(times) == min(times):
        return container_rate
    estimate = (len(times) - 1) / ((max(times) - min(times)) * time_base)
    nearest = min(STANDARD_RATES, key=lambda rate: abs(rate - estimate))
    return nearest if abs(nearest - estimate) < 1e-3 * estimate else estimate


def on_screen(shown: np.ndarray, indices: np.ndarray, video_fps: float) -> np.ndarray:
    """For each sampled index (a time, index / video_fps), the position in `shown` (sorted display
    times, seconds from the first frame) of the picture on screen then: the last one shown at or
    before it. At a constant rate that is the frame with that index; at a variable rate few
    pictures fall on the sampled times, and counting frames would put the video out of time."""
    slots = np.round(shown * video_fps)  # the index a picture's time rounds to, as at a constant rate
    return np.maximum(np.searchsorted(slots, indices, side="right") - 1, 0)


def _decode_pyav(path: Path, targets: np.ndarray, keyframe: tuple | None, *, threads: int,
                 by_order: bool = False) -> Iterator:  # fmt: skip
    """Yields the decoded pictures (av.VideoFrame) whose timestamps are `targets` (sorted; a repeat
    yields the same picture again), decoded from `keyframe` = (pts, dts) (None: from the start);
    `by_order`: whose places in display order are. RuntimeError after the last picture found when
    some are missing."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "AUTO", threads
        packets, (key_pts, key_dts) = container.demux(stream), keyframe or (None, None)
        if keyframe is not None:
            container.seek(key_pts, stream=stream, backward=True)
            first = next(packets, None)
            if first is not None and first.pts == key_pts:
                packets = itertools.chain([first], packets)
            else:  # MPEG-TS seeks by decoding time: at the keyframe's pts it lands a few pictures past it
                container.seek(key_pts if key_dts is None else min(key_pts, key_dts), stream=stream, backward=True)
        # Sequential decode; the wanted frames are known by their timestamps, which stay right
        # after a seek. H.264 in MP4/MKV (avcC) marks the pictures no other picture predicts from
        # (nal_ref_idc 0: most B-frames); unwanted ones never reach the decoder, which leaves the
        # rest bit-exact; with x264's default B-frames that is half the pictures, a quarter of the
        # decoding. Other codecs decode all.
        extradata = stream.codec_context.extradata or b""
        is_avcc = stream.codec_context.name == "h264" and len(extradata) > 4 and extradata[0] == 1
        nal_length = (extradata[4] & 3) + 1 if is_avcc else 0
        wanted = set(targets.tolist())
        done, started, shown = 0, keyframe is None, 0
        for packet in packets:
            started = started or packet.pts == key_pts  # where a seek lands early, the packets before are passed over
            # Pictures shown before the keyframe but stored after it (open GOP) refer to the run
            # before, which this decoder has not seen: they would decode broken (and logged).
            if not started or (key_pts is not None and packet.pts is not None and packet.pts < key_pts):
                continue
            if (nal_length and packet.pts is not None and packet.size and packet.pts not in wanted
                    and not _h264_is_reference(bytes(packet), nal_length)):  # fmt: skip
                continue
            for frame in packet.decode():
                while done < len(targets) and (shown if by_order else frame.pts) == targets[done]:
                    yield frame
                    done += 1
                shown += 1
            if done == len(targets):
                break
    if done < len(targets):  # pictures that did not decode (a damaged file): never a stand-in
        raise RuntimeError(f"decoded only {done} of the {len(targets)} wanted frames (up to pts {targets[-1]})")


def _to_rgb(to_rgb, frame, out: np.ndarray) -> None:
    """Converts and scales a decoded picture into `out` (H, W, 3) with the swscale context `to_rgb`."""
    h, w = out.shape[:2]
    # The frame's own matrix (BT.709 for HD video) and range, as decord (fetch_video) reads them:
    # left alone, PyAV has swscale take every frame as limited-range BT.601. RGB output has no
    # matrix; `dst_colorspace` only has to differ for PyAV to pass them on. Planar RGB ("gbrp")
    # keeps the colour detail that packed rgb24 loses when swscale converts and scales in one
    # pass: mean |diff| from fetch_video's pixels ~1.2 instead of 2.5-4.5.
    matrix = frame.colorspace if frame.colorspace in (1, 4, 5, 6, 7, 9, 10) else 5
    full_range = frame.color_range == 2 or frame.format.name.startswith("yuvj")
    rgb = to_rgb.reformat(frame, width=w, height=h, format="gbrp", interpolation="BICUBIC",
                          src_colorspace=matrix, dst_colorspace=1 if matrix != 1 else 5,
                          src_color_range=2 if full_range else 1, dst_color_range=2)  # fmt: skip
    # Planes g, b, r, rows padded to line_size: interleaved straight into `out` (to_ndarray
    # copies three times more, a fifth of the conversion time).
    planes = [np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, :w] for plane in rgb.planes]
    np.stack([planes[2], planes[0], planes[1]], axis=-1, out=out)


def _h264_is_reference(data: bytes, nal_length: int) -> bool:
    """Whether an H.264 access unit (length-prefixed NAL units) holds a slice that other pictures
    may predict from. Without any slice it counts as one: only provably unused data is skipped."""
    at, has_slice = 0, False
    while at + nal_length < len(data):
        header = data[at + nal_length]
        if header & 0x1F in (1, 5):  # coded slice: non-IDR, IDR
            if header & 0x60:  # nal_ref_idc
                return True
            has_slice = True
        at += nal_length + int.from_bytes(data[at : at + nal_length], "big")
    return not has_slice


_READERS = {"decord": _read_decord, "pyav": _read_pyav}


def video_info(video_path) -> dict:
    """Duration, fps, frame count and size (as shown, turned upright) after decoding one frame
    (PyAV): from the video stream's header, else (MKV, WebM, MPEG-TS) from its pictures' times.

    What `data check` uses to tell that a video exists and decodes. DataError when it does not.
    """
    import av

    path = Path(video_path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            first = next(container.decode(stream))
            video_fps = float(stream.average_rate or stream.guessed_rate or 0)
            # Every picture's time, read without decoding (from the first packet, after the decode
            # above): a file cut short shows here, and an MKV or WebM written live has no duration else.
            with av.open(str(path)) as again:
                times = [pts for pts, _, _, shown in _pictures(again, again.streams.video[0]) if shown]
            if stream.duration:
                duration = float(stream.duration * stream.time_base)
            else:  # MKV, WebM, MPEG-TS: the file's duration is its longest stream's (audio may run on)
                video_fps = _rate_of(times, float(stream.time_base), video_fps)
                duration = len(times) / video_fps if times and video_fps else None
            _check_complete(path, times, float(stream.time_base), video_fps, container, stream)
            frames = stream.frames or (round(duration * video_fps) if duration else 0)
            width, height = stream.codec_context.width, stream.codec_context.height
            if _quarter_turns(first.rotation) % 2:  # stored sideways: the size as shown, as load_frames gives it
                width, height = height, width
            return {"duration": duration, "fps": video_fps, "frames": frames, "width": width, "height": height}
    except (av.error.FFmpegError, IndexError, StopIteration) as e:
        raise DataError(f"{path}: video does not decode ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- the on-disk cache
def _cache_read(cache_file: Path) -> VideoFrames | None:
    try:
        with open(cache_file, "rb") as f:
            frames = np.lib.format.read_array(f, allow_pickle=False)
            fields = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # Only a crash mid-write elsewhere could leave this (writes are atomic): drop it.
        logger.warning("frame cache: unreadable entry %s, decoding again", cache_file)
        with contextlib.suppress(OSError):  # not ours to delete, say: decoding again is enough
            cache_file.unlink(missing_ok=True)
        return None
    try:
        os.utime(cache_file)  # mtime is the recency the size cap evicts by
    except OSError:
        pass
    indices = np.array(fields.pop("frames_indices"), dtype=np.int64)
    return VideoFrames(frames=frames, frames_indices=indices, timestamps=indices / fields["video_fps"], **fields,
                       backend="cache")  # fmt: skip


def _cache_write(cache_file: Path, result: VideoFrames, max_bytes: int) -> None:
    # Write to a temporary file in the same directory, then rename: readers in other processes
    # see the whole entry or none of it, and two writers of one key simply both succeed. A cache
    # that cannot be written (read-only, full, another user's) costs a warning, never the run.
    # An entry is the frames as a .npy file, then the rest as JSON: a third of np.savez's time to
    # write (no zip checksum, no copy), which every cold read pays.
    fields = {name: getattr(result, name) for name in ("fps", "video_fps", "total_num_frames", "duration",
                                                        "range_start", "range_frames")}  # fmt: skip
    fields["frames_indices"] = result.frames_indices.tolist()
    tmp = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".tmp-", suffix=".frames")
        with os.fdopen(fd, "wb") as f:
            np.lib.format.write_array(f, result.frames, allow_pickle=False)
            f.write(json.dumps(fields).encode())
        os.replace(tmp, cache_file)
        _evict(cache_file.parent, max_bytes)
    except OSError as e:
        logger.warning("frame cache: cannot write %s (%s)", cache_file, e)
        with contextlib.suppress(OSError):
            if tmp:
                Path(tmp).unlink(missing_ok=True)


def _evict(cache_dir: Path, max_bytes: int) -> None:
    """Delete least recently used entries until the cache is within `max_bytes`."""
    entries = []
    for entry in os.scandir(cache_dir):
        if entry.name.endswith((".frames", ".npz")):  # .npz: entries written before CACHE_VERSION 6
            try:
                stat = entry.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            if not entry.name.startswith(".tmp-"):
                entries.append((stat.st_mtime_ns, stat.st_size, entry.path))
            elif time.time() - stat.st_mtime > 3600:  # left by a writer that was killed: no write takes an hour
                Path(entry.path).unlink(missing_ok=True)
    total = sum(size for _, size, _ in entries)
    for _, size, entry_path in sorted(entries):
        if total <= max_bytes:
            break
        Path(entry_path).unlink(missing_ok=True)
        total -= size
