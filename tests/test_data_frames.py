"""The frame pipeline: sampling and sizes as qwen-vl-utils, timestamps checked against the pictures,
metadata that gives the real HF processor the right `second_per_grid_ts`, both decoders, the cache."""

import itertools
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

from openrlhf_video.data.frames import load_frames, video_info
from openrlhf_video.data.records import DataError
from openrlhf_video.synthetic import COLORS, make_video

EVENT = (2.0, 5.0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    # Odd lengths on purpose: frame counts get floored to even, so the real sampled fps is not 2.
    root = tmp_path_factory.mktemp("videos")
    return {
        "10fps": make_video(root / "v10.mp4", duration=6.5, fps=10, event=EVENT, color="red"),
        "30fps": make_video(root / "v30.mp4", duration=7.5, fps=30, event=EVENT, color="red"),
    }


def shows_square(frame: np.ndarray) -> bool:
    """Whether the red square is in the frame (the background is dim noise below 40)."""
    red = np.array(COLORS["red"])
    return bool((np.abs(frame.astype(int) - red).max(axis=-1) < 40).mean() > 0.05)


def assert_equals_a_plain_decode(vf, path, frame_numbers=None):
    """The sampled frames equal a decode of every frame of `path`, converted as load_frames does
    (the frames at `frame_numbers`, by default `vf.frames_indices`: the same at a constant rate)."""
    import av
    from av.video.reformatter import VideoReformatter

    h, w = vf.frames.shape[1:3]
    to_rgb = VideoReformatter()
    with av.open(str(path)) as container:
        every = [to_rgb.reformat(f, width=w, height=h, format="gbrp", interpolation="BICUBIC").to_ndarray()
                 for f in container.decode(video=0)]  # fmt: skip
    frame_numbers = vf.frames_indices if frame_numbers is None else frame_numbers
    np.testing.assert_array_equal(vf.frames, np.stack([every[i] for i in frame_numbers]))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("name", ["10fps", "30fps"])
def test_frames_are_sampled_like_qwen_and_timestamps_match_the_pictures(videos, name, backend):
    vf = load_frames(videos[name], backend=backend, cache_dir=None)
    video_fps = 10 if name == "10fps" else 30
    t, h, w, c = vf.frames.shape
    assert vf.frames.dtype == np.uint8 and c == 3
    assert t % 2 == 0 and h % 28 == 0 and w % 28 == 0
    assert vf.backend == backend and vf.video_fps == pytest.approx(video_fps)
    assert vf.total_num_frames == round((6.5 if name == "10fps" else 7.5) * video_fps)
    assert vf.fps == pytest.approx(t / vf.total_num_frames * video_fps)
    np.testing.assert_allclose(vf.timestamps, vf.frames_indices / video_fps)
    # The square is on screen exactly for 2.0 <= time <= 5.0: the timestamps say when each frame is.
    for frame, seconds in zip(vf.frames, vf.timestamps):
        assert shows_square(frame) == (EVENT[0] <= seconds <= EVENT[1]), seconds


def numbered_picture(number: int) -> np.ndarray:
    """A 320x192 picture showing `number` in six white-or-black bars (read back by frame_number)."""
    picture = np.zeros((192, 320, 3), np.uint8)
    for bit in range(6):
        picture[:, bit * 53 : bit * 53 + 45] = 255 * (number >> bit & 1)
    return picture


def frame_number(frame: np.ndarray) -> int:
    h, w = frame.shape[:2]
    return sum(1 << bit for bit in range(6) if frame[h // 2, (bit * 53 + 22) * w // 320].mean() > 128)


def test_variable_frame_rate_frames_are_the_pictures_on_screen_at_their_timestamps(tmp_path):
    """Phone footage often has a variable frame rate: here 1 s at 30 fps, then 3 s at 10 fps. A
    sampled index is a time (index / average fps), so the frame must be the picture on screen then
    (to half a sampling slot), not the index-th picture, which would be ~0.4 s early here."""
    import fractions

    import av

    times = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(30)]
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)  # x264's default B-frames
        stream.width, stream.height, stream.pix_fmt = 320, 192, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for number, time_s in enumerate(times):
            frame = av.VideoFrame.from_ndarray(numbered_picture(number), format="rgb24")
            frame.pts, frame.time_base = round(time_s * 1000), fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

    numbers = {}
    for backend in ("pyav", "decord"):
        vf = load_frames(path, backend=backend, cache_dir=None)
        numbers[backend] = [frame_number(frame) for frame in vf.frames]
        slot = 0.5 / vf.video_fps
        for number, time_s in zip(numbers[backend], vf.timestamps):
            assert times[number] <= time_s + slot and (number == len(times) - 1 or times[number + 1] > time_s + slot)
        if backend == "pyav":  # the unreferenced B-frames it leaves out were not the ones on screen
            assert_equals_a_plain_decode(vf, path, numbers["pyav"])
    assert numbers["pyav"] == numbers["decord"] and len(set(numbers["pyav"])) == len(numbers["pyav"]) >= 6


@pytest.mark.parametrize("codec, options", [("libx264", {}), ("mpeg4", {"bf": "2"})])
def test_avi_with_b_frames_gives_the_sampled_pictures(tmp_path, codec, options):
    """AVI has no presentation times: FFmpeg numbers packets in decoding order, so with B-frames
    a pts is not when a picture is shown (matched by pts, pictures were a frame or two off)."""
    import av

    path = tmp_path / "b_frames.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30, options=options)
        stream.width, stream.height, stream.pix_fmt = 320, 192, "yuv420p"
        for number in range(60):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(numbered_picture(number), format="rgb24")))
        container.mux(stream.encode())
    for clip in (None, (0.5, 1.5)):
        vf = load_frames(path, clip=clip, backend="pyav", cache_dir=None)
        assert [frame_number(frame) for frame in vf.frames] == vf.frames_indices.tolist()


def test_same_frame_count_and_size_as_qwen_vl_utils_fetch_video(videos):
    from qwen_vl_utils import fetch_video

    budget = dict(fps=2.0, min_pixels=4 * 28 * 28, total_pixels=2048 * 28 * 28, max_frames=768)
    for path in videos.values():
        theirs = fetch_video({"video": str(path), **budget})  # (T, C, H, W) float
        ours = load_frames(path, cache_dir=None).frames
        assert ours.shape == (theirs.shape[0], theirs.shape[2], theirs.shape[3], 3)
        # Same frames, scaled by another library: close, not identical.
        assert np.abs(ours.astype(float) - theirs.permute(0, 2, 3, 1).numpy()).mean() < 8


def test_the_processor_gets_the_real_sampled_fps(videos, tiny_model_dir):
    """`second_per_grid_ts` (seconds per temporal token) drives Qwen2.5-VL's absolute time axis:
    with our metadata the real HF processor must compute temporal_patch_size / real fps."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    text = "<|vision_start|><|video_pad|><|vision_end|>when?"
    for path, kwargs in [(videos["10fps"], {}), (videos["30fps"], {}), (videos["30fps"], {"max_frames": 6}),
                         (videos["30fps"], {"clip": (1.0, 4.5)})]:  # fmt: skip
        vf = load_frames(path, cache_dir=None, **kwargs)
        metadata = {k: v for k, v in vf.metadata().items() if k != "do_sample_frames"}  # HF has no such field
        out = processor(
            text=[text], videos=[vf.frames], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt"
        )
        assert out["second_per_grid_ts"][0] == pytest.approx(2 / vf.fps)
        assert vf.fps != pytest.approx(2.0)  # the floors to even frames make the naive value wrong
        # No second resize inside the processor: the grid is our frames' own.
        assert out["video_grid_thw"][0].tolist() == [
            len(vf.frames) // 2,
            vf.frames.shape[1] // 14,
            vf.frames.shape[2] // 14,
        ]


def test_clip_samples_only_that_part_in_the_whole_videos_time(videos):
    vf = load_frames(videos["30fps"], clip=(3.0, 6.0), cache_dir=None, backend="pyav")
    assert 3.0 <= vf.timestamps[0] and vf.timestamps[-1] <= 6.0
    assert [shows_square(f) for f in vf.frames] == [t <= EVENT[1] for t in vf.timestamps]
    meta = vf.metadata()
    assert meta["frames_indices"][0] == 0 and meta["total_num_frames"] == vf.range_frames
    assert meta["duration"] == pytest.approx(3.0, abs=0.05) and meta["do_sample_frames"] is False
    decord_vf = load_frames(videos["30fps"], clip=(3.0, 6.0), cache_dir=None, backend="decord")
    np.testing.assert_array_equal(decord_vf.frames_indices, vf.frames_indices)


def test_auto_falls_back_to_decord_when_pyav_fails(videos, monkeypatch, caplog):
    import av

    def broken(*args, **kwargs):
        raise RuntimeError("PyAV cannot open this file")

    monkeypatch.setattr(av, "open", broken)
    vf = load_frames(videos["10fps"], cache_dir=None)
    assert vf.backend == "decord" and len(vf.frames) == 12


def test_pyav_skips_unreferenced_b_frames_and_decodes_keyframe_runs_in_parallel_bit_exact(tmp_path, monkeypatch):
    """Pictures that nothing predicts from are never decoded unless sampled, and the runs between
    keyframes are shared among DECODE_THREADS decoders; the sampled frames must still equal a
    plain decode of every frame, converted the same way."""
    import av

    from openrlhf_video.data import frames

    # 25 s at 30 fps: x264 puts a keyframe every 250 frames, so there are three runs or more.
    path = make_video(tmp_path / "pan.mp4", duration=25.0, fps=30, size=(192, 108), event=EVENT, background="panning")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        nal_length = (stream.codec_context.extradata[4] & 3) + 1
        packets = [p for p in container.demux(stream) if p.size]
        refs = [frames._h264_is_reference(bytes(p), nal_length) for p in packets]
        keyframe_pts = sorted(p.pts for p in packets if p.is_keyframe)
        frame_pts = sorted(p.pts for p in packets)
    keyframes = len(keyframe_pts)
    assert 0.25 < 1 - sum(refs) / len(refs) < 0.75  # x264's default B-frames: about half are skippable
    assert keyframes >= 3
    shares = []
    decode = frames._decode_pyav
    monkeypatch.setattr(
        frames,
        "_decode_pyav",
        lambda path, targets, keyframe, **kw: (
            shares.append((targets, keyframe)) or decode(path, targets, keyframe, **kw)
        ),
    )
    for threads, clip in ((1, None), (3, None), (3, (1.3, 4.9)), (2, (7.0, 21.0))):
        monkeypatch.setattr(frames, "DECODE_THREADS", threads)
        shares.clear()
        vf = load_frames(path, clip=clip, cache_dir=None, backend="pyav")
        # One decoder per share of keyframe runs; together the shares are all the sampled frames
        # (decoders know them by timestamp).
        assert len(shares) == min(threads, keyframes) if clip is None else 1 <= len(shares) <= threads
        sampled_pts = np.concatenate(sorted((targets for targets, _ in shares), key=min))
        np.testing.assert_array_equal(sampled_pts, np.array(frame_pts)[vf.frames_indices])
        # Each decoder seeks to the exact timestamp of the keyframe its first frame follows.
        for targets, keyframe in shares:
            assert keyframe[0] == max(pts for pts in keyframe_pts if pts <= targets[0])
        assert_equals_a_plain_decode(vf, path)
    assert len(shares) == 2  # the clip (7, 21) spans a keyframe


def test_decoded_pictures_wait_for_any_thread_to_convert_them_up_to_the_backlog_cap(tmp_path, monkeypatch):
    """A decoder hands its pictures to a backlog that the threads done decoding convert, so the
    core whose share ends first takes conversions of the longer one; at most BACKLOG_BYTES of
    pictures wait. The frames must still equal a plain decode."""
    from openrlhf_video.data import frames

    # 20 s at 30 fps, x264's keyframe every 250 frames: three runs, two shares on two decoders.
    path = make_video(tmp_path / "pan.mp4", duration=20.0, fps=30, size=(160, 96), event=EVENT, background="panning")
    picture_bytes = 160 * 96 * 12 // 8  # yuv420p
    decode, to_rgb = frames._decode_pyav, frames._to_rgb
    events = []  # +1: a picture decoded, -1: one converted

    def counted_decode(*args, **kwargs):
        for frame in decode(*args, **kwargs):
            events.append(1)
            yield frame

    monkeypatch.setattr(frames, "_decode_pyav", counted_decode)
    monkeypatch.setattr(frames, "_to_rgb", lambda *args: events.append(-1) or to_rgb(*args))
    for cap, threads, most_waiting in ((2**30, 2, None), (3, 2, 3 + 2 + 1), (2**30, 1, 1)):
        monkeypatch.setattr(frames, "BACKLOG_BYTES", cap * picture_bytes)
        monkeypatch.setattr(frames, "DECODE_THREADS", threads)
        events.clear()
        vf = load_frames(path, cache_dir=None, backend="pyav")
        waiting = int(np.cumsum(events).max())
        assert events.count(1) == events.count(-1) == len(vf.frames) == 40
        if most_waiting is None:  # no cap: nothing is converted before the first share is decoded
            assert waiting >= 15
        else:  # the cap, plus the picture each thread has in hand, plus one: two threads may
            assert waiting <= most_waiting  # both see room for the last place (qsize, then put)
        assert_equals_a_plain_decode(vf, path)

    # A share that fails mid-way (a damaged file) must not leave the other threads waiting for
    # its pictures: PyAV gives up and decord takes over. Run aside, so a hang fails the test.
    def failing_decode(path, targets, keyframe, **kwargs):
        second_share = keyframe[0] > 0  # the first starts at the keyframe at pts 0
        yield from itertools.islice(decode(path, targets, keyframe, **kwargs), 2 if second_share else None)
        if second_share:
            raise RuntimeError("decoded only 2 of the wanted frames")

    monkeypatch.setattr(frames, "_decode_pyav", failing_decode)
    monkeypatch.setattr(frames, "DECODE_THREADS", 2)
    result = []
    reader = threading.Thread(target=lambda: result.append(load_frames(path, cache_dir=None)), daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive() and result[0].backend == "decord" and len(result[0].frames) == 40


@pytest.mark.parametrize("kind", ["h264 in mkv", "h264 in mpeg-ts", "h264 open gop", "vp9 in webm"])
def test_other_containers_and_codecs_split_at_keyframes_bit_exact(tmp_path, monkeypatch, kind):
    """MKV, WebM and MPEG-TS store no frame count, and MKV and WebM only millisecond timestamps
    (a rate estimated from them, 24.0008, would lose two of the 20 frames); a seek to a keyframe's
    pts lands past it in MPEG-TS; open-GOP H.264 has keyframes that are not IDR (pictures after
    them in decoding order may refer back across them); VP9 has no H.264 NAL units. The frames
    must still be qwen-vl-utils' and equal a plain decode of every frame, with three decoders."""
    import av

    from openrlhf_video.data import frames

    source = make_video(tmp_path / "src.mp4", duration=10.0, fps=24, size=(160, 96), event=EVENT, background="panning")
    codec, options, path = {
        "h264 in mkv": (None, None, tmp_path / "v.mkv"),  # the same packets, remuxed
        "h264 in mpeg-ts": (None, None, tmp_path / "v.ts"),
        "h264 open gop": (
            "libx264",
            {"x264-params": "open-gop=1:keyint=60:min-keyint=60:scenecut=0"},
            tmp_path / "v.mp4",
        ),
        "vp9 in webm": ("libvpx-vp9", {"g": "60", "deadline": "realtime", "cpu-used": "8"}, tmp_path / "v.webm"),
    }[kind]
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream = src.streams.video[0]
        if codec is None:
            out = dst.add_stream_from_template(stream)
            for packet in src.demux(stream):
                if packet.dts is not None:
                    packet.stream = out
                    dst.mux(packet)
        else:
            out = dst.add_stream(codec, rate=24, width=160, height=96, pix_fmt="yuv420p", options=options)
            for frame in src.decode(stream):
                dst.mux(out.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
            dst.mux(out.encode())
    monkeypatch.setattr(frames, "DECODE_THREADS", 3)
    for clip, count in ((None, 20), ((2.1, 9.0), 12)):
        vf = load_frames(path, clip=clip, cache_dir=None, backend="pyav")
        assert vf.total_num_frames == 240 and vf.video_fps == 24 and len(vf.frames) == count
        assert_equals_a_plain_decode(vf, path)


def test_an_mp4_cut_by_stream_copy_counts_only_the_pictures_it_shows(tmp_path):
    """`ffmpeg -ss 1.5 -c copy` keeps the packets from the keyframe before 1.5 s and hides the
    pictures before it with an edit list; the frame count in the file still counts them."""
    import av

    source = make_video(tmp_path / "src.mp4", duration=10.0, fps=30, size=(192, 108), event=EVENT, background="panning")
    cut = tmp_path / "cut.mp4"
    with av.open(str(source)) as src, av.open(str(cut), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        shift = round(1.5 / stream.time_base)
        for packet in src.demux(stream):  # the only keyframe is the first picture
            if packet.dts is not None:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, out
                dst.mux(packet)
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 300  # what the file says
    for clip in (None, (1.0, 5.0)):
        vf = load_frames(cut, clip=clip, cache_dir=None, backend="pyav")
        assert vf.total_num_frames == 255 and vf.duration == pytest.approx(8.5)
        assert_equals_a_plain_decode(vf, cut)  # which shows the 255 pictures from 1.5 s on


def test_bad_videos_raise_a_clear_error_naming_the_file(tmp_path, videos):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    for path in (corrupt, tmp_path / "missing.mp4"):
        with pytest.raises(DataError, match=str(path)):
            load_frames(path, cache_dir=None)
        with pytest.raises(DataError, match=str(path)):
            video_info(path)
    one_frame = make_video(tmp_path / "one.mp4", duration=0.1, fps=10, event=(0.0, 0.1))
    with pytest.raises(DataError, match="one.mp4.*cannot sample"):
        load_frames(one_frame, cache_dir=None)
    with pytest.raises(
        DataError, match="cannot sample frames \\(clip \\[1.0, None\\]"
    ):  # a rollout catches DataError only
        load_frames(videos["10fps"], clip=[1.0, None], cache_dir=None)
    with pytest.raises(DataError, match="no video given"):  # a row without a video
        load_frames(None, cache_dir=None)


def test_video_info_reads_duration_from_the_file(videos, tmp_path):
    import av

    info = video_info(videos["30fps"])
    assert info["duration"] == pytest.approx(7.5, abs=0.05) and info["fps"] == 30 and info["frames"] == 225
    # An MKV written live stores no duration (nor a frame count): the pictures are counted.
    live = tmp_path / "live.mkv"
    with av.open(str(videos["30fps"])) as src, av.open(str(live), "w", options={"live": "1"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    info = video_info(live)
    assert info["duration"] == pytest.approx(7.5) and info["fps"] == 30 and info["frames"] == 225
    vf = load_frames(live, cache_dir=None)
    assert (vf.duration, vf.video_fps, vf.total_num_frames) == (info["duration"], info["fps"], info["frames"])


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_a_copy_cut_short_is_a_data_error_not_a_shorter_video(videos, tmp_path, container):
    """Half the bytes of an MKV (or of an MP4 with its index first) still declares the whole
    duration: its frames would be sampled from the part left, while spans stay on 7.5 s."""
    import av

    whole = tmp_path / f"whole.{container}"
    options = {"movflags": "faststart"} if container == "mp4" else {}
    with av.open(str(videos["30fps"])) as src, av.open(str(whole), "w", options=options) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    assert video_info(whole)["duration"] == pytest.approx(7.5, abs=0.05)
    half = tmp_path / f"half.{container}"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match=f"half.{container}: truncated: its pictures cover .* of the 7.5 s it declares"):
        video_info(half)  # what `data check` runs
    for clip in (None, [4.0, 6.0]):  # a clip's read seeks past the start: the end still shows the cut
        with pytest.raises(DataError, match=f"half.{container}: truncated"):
            load_frames(half, clip=clip, cache_dir=None)


def _load_from_cache(args):
    path, cache_dir = args
    vf = load_frames(path, cache_dir=cache_dir)
    return vf.frames.sum(), vf.backend


def test_cache_hits_keys_and_is_safe_for_concurrent_processes(videos, tmp_path, caplog):
    cache = tmp_path / "cache"
    cold = load_frames(videos["10fps"], cache_dir=cache)
    warm = load_frames(videos["10fps"], cache_dir=cache)
    assert cold.backend == "pyav" and warm.backend == "cache"
    for name in ("frames", "frames_indices", "timestamps"):
        np.testing.assert_array_equal(getattr(cold, name), getattr(warm, name))
    assert warm.metadata() == cold.metadata() and warm.fps == cold.fps
    assert load_frames(videos["10fps"], cache_dir=cache, fps=1.0).backend != "cache"  # settings are in the key
    assert (
        load_frames(videos["10fps"], cache_dir=cache, backend="decord").backend == "decord"
    )  # the decoder too: other pixels
    os.utime(videos["10fps"], ns=(1, 1))  # a changed file (mtime) is decoded again
    assert load_frames(videos["10fps"], cache_dir=cache).backend != "cache"

    # A truncated entry (as a crash outside our atomic writes could leave) is dropped and rebuilt.
    # Cut in the header, in the frames and in the JSON after them.
    whole = max(cache.glob("*.frames"), key=os.path.getmtime).read_bytes()
    for cut in (100, len(whole) // 2, len(whole) - 10):
        entry = max(cache.glob("*.frames"), key=os.path.getmtime)
        entry.write_bytes(whole[:cut])
        caplog.clear()
        assert load_frames(videos["10fps"], cache_dir=cache).backend != "cache"
        assert "unreadable entry" in caplog.text

    # Several processes filling and reading one key at once all get the same, whole frames.
    fresh = tmp_path / "shared"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_load_from_cache, [(videos["30fps"], fresh)] * 6)
    assert len({total for total, _ in results}) == 1
    assert len(list(fresh.glob("*.frames"))) == 1 and not list(fresh.glob(".tmp-*"))


def test_a_cache_that_cannot_be_used_costs_a_warning_not_the_frames(videos, tmp_path, caplog):
    """A rollout only survives a DataError: a read-only, full or foreign cache must not raise."""
    (tmp_path / "file").write_text("not a directory")
    vf = load_frames(videos["10fps"], cache_dir=tmp_path / "file" / "cache")  # NotADirectoryError everywhere
    assert vf.backend == "pyav" and len(vf.frames) == 12 and "frame cache: cannot write" in caplog.text


def test_cache_size_cap_evicts_least_recently_used(videos, tmp_path):
    cache = tmp_path / "cache"
    load_frames(videos["10fps"], cache_dir=cache, fps=1.0)
    [first] = cache.glob("*.frames")
    cap = int(first.stat().st_size * 2.5)  # room for two entries of about this size, not three
    load_frames(videos["10fps"], cache_dir=cache, fps=1.0, min_frames=6, cache_max_bytes=cap)
    time.sleep(0.05)  # file times tick coarsely (a few ms): a read in the same tick as the last write would tie
    assert (
        load_frames(videos["10fps"], cache_dir=cache, fps=1.0).backend == "cache"
    )  # the first is read again: most recent
    load_frames(videos["10fps"], cache_dir=cache, fps=1.0, min_frames=8, cache_max_bytes=cap)
    entries = list(cache.glob("*.frames"))
    assert len(entries) == 2 and first in entries
    assert sum(p.stat().st_size for p in entries) <= cap
    # what a killed writer leaves behind goes once it is clearly not being written any more
    stale, fresh = cache / ".tmp-killed.frames", cache / ".tmp-writing.frames"
    for leftover in (stale, fresh):
        leftover.write_bytes(b"\0" * 100)
    os.utime(stale, (time.time() - 7200,) * 2)
    load_frames(videos["10fps"], cache_dir=cache, fps=1.0, min_frames=10, cache_max_bytes=cap)
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("colorspace, color_range", [(1, 1), (1, 2), (5, 2)])  # BT.709 / BT.601, limited / full
def test_colours_follow_the_videos_own_matrix_and_range_as_decord_does(tmp_path, colorspace, color_range):
    """HD video is tagged BT.709: converted as BT.601 (PyAV's default), pure red lost ~15 levels."""
    import av

    path = tmp_path / "tagged.mp4"
    rgb = np.zeros((56, 112, 3), np.uint8)  # multiples of 28: no resizing, whose filters differ at edges
    rgb[:, :32], rgb[:, 32:64], rgb[:, 64:] = (200, 30, 30), (30, 200, 30), (16, 16, 235)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 112, 56, "yuv420p"
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = (
            colorspace,
            colorspace,
            colorspace,
            color_range,
        )
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=colorspace, dst_color_range=color_range)
            frame.colorspace, frame.color_range = colorspace, color_range
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    ours = load_frames(path, cache_dir=None, fps=2.0, backend="pyav").frames.astype(float)
    assert np.abs(ours - load_frames(path, cache_dir=None, fps=2.0, backend="decord").frames).mean() < 0.5
    assert np.abs(ours[:, 8:48, 4:28] - (200, 30, 30)).mean() < 4  # the source colours, give or take the codec


def test_audio_that_runs_on_past_the_video_is_not_a_cut(tmp_path):
    """MKV keeps no length per stream but the file's, the longest stream's: 7 s of audio here."""
    import fractions

    import av

    path = tmp_path / "long_audio.mkv"
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 112, 56, "yuv420p"
        for _ in range(40):  # 4 s
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((56, 112, 3), np.uint8), format="rgb24")))
        out.mux(video.encode())
        for k in range(7 * 48000 // 1024):  # 7 s
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, k * 1024, fractions.Fraction(1, 48000)
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    assert len(load_frames(path, cache_dir=None, fps=2.0).frames) == 8
    assert video_info(path)["duration"] == 4.0  # what data check runs: no DataError, and the video's length


@pytest.mark.parametrize(
    "degrees, red_rows", [(-90, slice(0, 28)), (90, slice(-28, None)), (180, None), (135, None), (100, None)]
)
def test_video_stored_sideways_comes_out_upright_as_decord_gives_it(tmp_path, degrees, red_rows):
    """A phone clip shot upright is stored sideways with a display matrix (MP4 'tkhd') saying how
    to turn it; PyAV hands out the stored picture: the model saw portrait video lying on its side."""
    import math
    import struct

    import av

    path = tmp_path / f"turned{degrees}.mp4"
    stored = np.zeros((56, 112, 3), np.uint8)
    stored[:, :28] = (200, 30, 30)  # red down the left edge of the stored picture
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 112, 56, "yuv420p"
        for _ in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(stream.encode())
    # FFmpeg 7 writes no matrix for a 'rotate' tag any more: set it in the track header (version 0).
    cos, sin = (round(math.cos(math.radians(degrees)) * 2**16), round(math.sin(math.radians(degrees)) * 2**16))
    data = bytearray(path.read_bytes())
    matrix_at = (
        data.find(b"tkhd") + 4 + 4 + 20 + 8 + 8
    )  # version and flags, times, id, duration; reserved; layer..volume
    data[matrix_at : matrix_at + 36] = struct.pack(">9i", cos, -sin, 0, sin, cos, 0, 0, 0, 1 << 30)  # counterclockwise
    path.write_bytes(bytes(data))

    ours = load_frames(path, cache_dir=None, fps=2.0, backend="pyav").frames
    assert ours.shape == load_frames(path, cache_dir=None, fps=2.0, backend="decord").frames.shape
    assert np.abs(ours - load_frames(path, cache_dir=None, fps=2.0, backend="decord").frames.astype(float)).mean() < 1
    if degrees != 180 and red_rows is None:  # not a quarter turn: left as stored, as decord does
        assert ours.shape[1:3] == (56, 112) and (ours[:, :, :28, 0] > 150).mean() > 0.9
        assert (video_info(path)["width"], video_info(path)["height"]) == (112, 56)
    elif red_rows is None:  # turned over: the red edge is on the right
        assert ours.shape[1:3] == (56, 112) and (ours[:, :, -28:, 0] > 150).mean() > 0.9
    else:  # a quarter turn: upright portrait, the red edge along the top (clockwise) or bottom
        assert ours.shape[1:3] == (112, 56) and (ours[:, red_rows, :, 0] > 150).mean() > 0.9
        assert (video_info(path)["width"], video_info(path)["height"]) == (56, 112)
