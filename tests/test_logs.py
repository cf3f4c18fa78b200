"""Logs a person can read: progress bars become periodic whole lines off a terminal, and a corrupt
video is reported once, by name, without FFmpeg's own lines."""

import subprocess
import sys
from pathlib import Path

FFMPEG_NOISE = ("[h264 @", "[mov,mp4", "Invalid NAL", "moov atom not found", "error while decoding MB")


def run(*args) -> subprocess.CompletedProcess:
    """A command with stdout and stderr to pipes, as in a log file or a CI job (no terminal); read
    as bytes, since text mode would turn a "\\r" into a line break."""
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, timeout=300)
    done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
    return done


def write_config(folder: Path, records: Path) -> Path:
    config = folder / "data.yaml"
    config.write_text(f"datasets:\n  - path: {records}\n    format: records\n    video_root: {records.parent}\n")
    return config


def test_progress_bars_print_periodic_whole_lines_off_a_terminal(synthetic_data, tmp_path):
    done = run("-m", "openrlhf_video", "data", "check", write_config(tmp_path, synthetic_data / "records.jsonl"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr
    bar = [line for line in done.stderr.splitlines() if line.startswith("checking records.jsonl:")]
    # 32 records: a line at the start, at every tenth of the way, none repeated at the close
    assert 5 <= len(bar) <= 12 and len(set(bar)) == len(bar), done.stderr
    assert bar[0].startswith("checking records.jsonl:   0%") and "100%" in bar[-1] and "32/32" in bar[-1]


def corrupt_copies(video: Path, folder: Path) -> dict[str, Path]:
    """A file cut short (its index, the moov atom, is at the end) and one whose frame data is
    overwritten in the middle (the header and the first frames are intact)."""
    data = video.read_bytes()
    (folder / "cut.mp4").write_bytes(data[:20000])
    garbled = bytearray(data)
    start, end = data.index(b"mdat") + 100000, data.rindex(b"moov") - 1000
    for i in range(start, end, 53):
        garbled[i] ^= 0xFF
    (folder / "garbled.mp4").write_bytes(bytes(garbled))
    return {"cut": folder / "cut.mp4", "garbled": folder / "garbled.mp4"}


def test_a_corrupt_video_is_named_once_without_ffmpegs_lines(synthetic_data, tmp_path):
    bad = corrupt_copies(synthetic_data / "videos" / "clip_000.mp4", tmp_path)
    records = tmp_path / "records.jsonl"
    records.write_text('{"id": "a", "task": "oeqa", "video": "cut.mp4", "question": "colour?", "answer": "red"}\n')
    done = run("-m", "openrlhf_video", "data", "check", write_config(tmp_path, records))
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert sum("cut.mp4" in line for line in (done.stdout + done.stderr).splitlines()) == 1
    assert not [noise for noise in FFMPEG_NOISE if noise in done.stdout + done.stderr], done.stderr
    # The frame loader of selection, the warm start and the rollout: PyAV fails, then decord (whose
    # FFmpeg logs errors unless told not to); each file is named by the DataError, and not in a flood.
    code = (
        "import sys\nfrom openrlhf_video.data.frames import load_frames\nfrom openrlhf_video.data import DataError\n"
        "for path in sys.argv[1:]:\n    try:\n        load_frames(path, cache_dir=None, fps=1.0)\n"
        "    except DataError as e:\n        print(e)\n"
    )
    done = run("-c", code, *bad.values())
    output = done.stdout + done.stderr
    assert done.returncode == 0 and not [noise for noise in FFMPEG_NOISE if noise in output], output
    for path in bad.values():
        assert f"{path}: cannot decode the video" in done.stdout
        assert sum(str(path) in line for line in output.splitlines()) <= 2, output
