"""Logs a person can read: progress bars become periodic whole lines off a terminal, and a corrupt
video is reported once, by name, without FFmpeg's own lines."""

import subprocess
import sys
from pathlib import Path


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
