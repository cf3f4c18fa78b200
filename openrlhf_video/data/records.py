"""Records: one format for every source, the YAML data config, and what bad data does.

A record is the dict of shared/DESIGN.md (times in seconds). Each converter reads one native
annotation layout and yields `(where, record)`, where `where` names the file and the line (or the
entry) so every problem can point at its source. `validate_record` is the one place that decides
what a good record is; training (`skips`) turns its errors into counted, logged skips.
"""

import csv
import functools
import json
import logging
import math
import os
import random
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

TASKS = ("tvg", "mcq", "gqa", "oeqa")
RECORD_KEYS = ("id", "task", "video", "question", "options", "answer", "span", "duration", "clip", "source")
# Annotated times a little outside the video are common (Charades-STA and ActivityNet Captions
# ends, NExT-GQA test starts at -0.2 s): up to this much a ground truth is kept as annotated, as
# the official metrics score it; beyond it, it is an error (wrong units, or the wrong video).
SPAN_SLACK_S = 1.0


class DataError(ValueError):
    """Bad input data. The message starts with where: `file:line` or `file: entry`."""


class Skips:
    """Training mode: a bad record is logged and counted instead of stopping, up to `limit`.

    `limit=0` is strict mode (the first problem raises). Past the limit it raises, because a
    dataset that is mostly broken is a configuration error, not noise to train through.
    `quiet` collects without logging (`data check` prints its own report).
    """

    def __init__(self, limit: float = 0, *, quiet: bool = False):
        self.limit = limit
        self.quiet = quiet
        self.problems: list[DataError] = []

    def __call__(self, error: DataError) -> None:
        self.problems.append(error)
        if len(self.problems) > self.limit:
            if self.limit == 0:
                raise error
            raise DataError(f"more than {self.limit} bad records skipped; the last: {error}") from error
        if not self.quiet:
            logger.warning("skipping bad record (%d of at most %s): %s", len(self.problems), self.limit, error)


# ---------------------------------------------------------------- converters, one per layout
# A converter yields `(where, build)` per annotation entry; `build()` returns the record. It is
# called at once, inside `located_records`, so one malformed entry (a missing key, a wrong
# type) becomes one counted problem at its own line instead of ending the whole file.
def _load_json(path: Path, top: type):
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark (Windows editors) is not data
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # a second value after the first: JSON Lines, most likely
            raise DataError(
                f"{path}:{e.lineno}: more than one JSON value: this layout is one JSON document, "
                "not JSON Lines (records JSONL is --format records)"
            ) from None
        raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
    if not isinstance(data, top):  # another format's file, most likely
        raise DataError(
            f"{path}: expected a JSON {'list' if top is list else 'object'} at the top, got {type(data).__name__}"
        )
    return data


def _records_jsonl(path: Path, **_):
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield f"{path}:{lineno}", lambda: json.loads(line)


def _temporal_r1(path: Path, *, video_root: Path | None = None, **_):
    # Temporal-R1 / EasyR1 JSON: `solution` is the span normalised by the video's length. Their
    # charades_train items carry no `video_length` (their loader takes the sampled frames' length,
    # the whole video's): then it is read from the video, found under `video_root`, once per video
    # (a video that gives none, once too: each of its items is then one counted problem).
    lengths = {}

    def build(i: int, item: dict) -> dict:
        video = Path(video_root or "") / item["video"]
        if "video_length" not in item and video not in lengths:
            from openrlhf_video.data.frames import video_info  # the decoding stack, only when needed

            try:
                lengths[video] = video_info(video)["duration"]
            except DataError as e:
                lengths[video] = e
        length = item["video_length"] if "video_length" in item else lengths[video]
        if isinstance(length, DataError):
            raise DataError(f"{path}: item {i}: no video_length, and the video gives none: {length}")
        return {
            "id": f"temporal_r1/{Path(item['video']).stem}#{i}",
            "task": "tvg",
            "video": item["video"],
            "question": item["problem"],
            "span": [item["solution"][0] * length, item["solution"][1] * length],
            "duration": length,
            "source": item.get("dataset") or "temporal_r1",
        }

    for i, item in enumerate(_load_json(path, list)):
        yield f"{path}: item {i}", functools.partial(build, i, item)


def _captions_json(path: Path, *, source: str, video_ext: str):
    # Charades-STA (JSON release) and ActivityNet Captions: {vid: {duration, timestamps, sentences}}.
    for vid, entry in _load_json(path, dict).items():
        try:  # a malformed entry (not an object, a key missing or null) is one problem at its name
            timestamps, sentences = entry["timestamps"], entry["sentences"]
            if len(timestamps) != len(sentences):
                raise ValueError(f"{len(timestamps)} timestamps but {len(sentences)} sentences")
        except (KeyError, TypeError, ValueError) as e:
            yield f"{path}: entry {vid!r}", lambda e=e: _raise(e)
            continue
        for k, (span, sentence) in enumerate(zip(timestamps, sentences)):
            yield (
                f"{path}: entry {vid!r} sentence {k}",
                lambda: {
                    "id": f"{source}/{vid}#{k}",
                    "task": "tvg",
                    "video": f"{vid}.{video_ext}",
                    "question": sentence.strip(),
                    "span": span,
                    "duration": entry.get("duration"),
                    "source": source,
                },
            )


def _charades_sta(path: Path, *, video_ext: str, **_):
    # The original release is text, one `VID START END##sentence` per line, without durations.
    if path.suffix != ".txt":
        yield from _captions_json(path, source="charades_sta", video_ext=video_ext)
        return
    seen = {}
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            head, sep, sentence = line.partition("##")
            fields = head.split()
            if not line.strip():
                continue
            if not sep or len(fields) != 3:
                yield (
                    f"{path}:{lineno}",
                    lambda: _raise(ValueError(f"expected 'VIDEO START END##sentence', got {line.strip()!r}")),
                )
                continue
            k = seen[fields[0]] = seen.get(fields[0], -1) + 1
            yield (
                f"{path}:{lineno}",
                lambda: {
                    "id": f"charades_sta/{fields[0]}#{k}",
                    "task": "tvg",
                    "video": f"{fields[0]}.{video_ext}",
                    "question": sentence.strip(),
                    "span": fields[1:],
                    "source": "charades_sta",
                },
            )


def _activitynet(path: Path, *, video_ext: str, **_):
    yield from _captions_json(path, source="activitynet", video_ext=video_ext)


def _nextgqa(path: Path, *, video_ext: str, **_):
    # NExT-GQA: {split}.csv (question, text answer, a0..a4) with gsub_{split}.json (duration and
    # spans per qid) beside it, and map_vid_vidorID.json (video id -> relative path) if present.
    # A question may have several grounding spans: `span` covers them all, and `segments` keeps each
    # one, because NExT-GQA's metrics, and so the reward, take the best-matching segment.
    spans_path = path.with_name(f"gsub_{path.stem}.json")
    if not spans_path.exists():
        raise DataError(f"{path}: NExT-GQA needs its grounding file {spans_path.name} beside it")
    spans = _load_json(spans_path, dict)
    id_map_path = path.with_name("map_vid_vidorID.json")
    id_map = _load_json(id_map_path, dict) if id_map_path.exists() else {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        for row in rows:  # line_num: a quoted field may span lines
            yield f"{path}:{rows.line_num}", lambda: _nextgqa_record(row, spans, id_map, video_ext)


def _nextgqa_record(row: dict, spans: dict, id_map: dict, video_ext: str) -> dict:
    vid, qid = row["video_id"], row["qid"]
    options = [row[f"a{i}"].strip() for i in range(5)]
    located = spans.get(vid, {}).get("location", {}).get(qid)
    if located is None:
        raise ValueError(f"video {vid} question {qid} has no grounding span in the gsub_*.json beside it")
    return {
        "id": f"nextgqa/{vid}#{qid}",
        "task": "gqa",
        "video": f"{id_map.get(vid, vid)}.{video_ext}",
        "question": row["question"].strip().rstrip("?") + "?",
        "options": options,
        "answer": _option_letter(row["answer"], options),
        "span": [min(s for s, _ in located), max(e for _, e in located)],
        "duration": spans[vid]["duration"],
        "source": "nextgqa",
        "segments": sorted(located),
    }


def _mvbench(path: Path, **_):
    # MVBench task JSON: candidates, the answer as text, optional clip bounds `start`/`end`.
    for i, item in enumerate(_load_json(path, list)):
        yield (
            f"{path}: item {i}",
            lambda: {
                "id": f"mvbench/{path.stem}#{i}",
                "task": "mcq",
                "video": item["video"],
                "question": item["question"],
                "options": [str(c) for c in item["candidates"]],
                "answer": _option_letter(str(item["answer"]), [str(c) for c in item["candidates"]]),
                "clip": [item["start"], item["end"]] if "start" in item or "end" in item else None,
                "source": f"mvbench/{path.stem}",
            },
        )


def _option_letter(answer: str, options: list[str]) -> str:
    try:
        return chr(ord("A") + [o.strip().lower() for o in options].index(answer.strip().lower()))
    except ValueError:
        raise ValueError(f"answer {answer!r} is not one of the options {options}") from None


def _raise(error: Exception):
    raise error


FORMATS = {
    "records": _records_jsonl,
    "temporal_r1": _temporal_r1,
    "charades_sta": _charades_sta,
    "activitynet": _activitynet,
    "nextgqa": _nextgqa,
    "mvbench": _mvbench,
}


# ---------------------------------------------------------------- validation
def _seconds(value, field: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {field}: expected seconds, got {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {field}: not a finite number ({value!r})")
    return number


def _interval(value, field: str, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise DataError(f"{where}: {field}: expected [start, end] in seconds, got {value!r}")
    start, end = (_seconds(v, field, where) for v in value)
    if not start < end:
        raise DataError(f"{where}: {field}: need start < end, got [{start}, {end}]")
    return [start, end]


def _clip(value, where: str, duration: float | None) -> list[float]:
    # The part of the video the model is shown: it must lie in the video, its end cut to the video's.
    start, end = _interval(value, "clip", where)
    if start < 0:
        raise DataError(f"{where}: clip: starts before the video, at {start}")
    if duration is not None:
        _inside_video([start, end], "clip", where, duration)
        end = min(end, duration)
    return [start, end]


def _ground_truth(value, field: str, where: str, duration: float | None) -> list[float]:
    # A true span or segment, as annotated: never reordered or clamped (SPAN_SLACK_S).
    start, end = _interval(value, field, where)
    if start < -SPAN_SLACK_S:
        raise DataError(f"{where}: {field}: [{start}, {end}] starts before the video")
    if duration is not None:
        _inside_video([start, end], field, where, duration)
    return [start, end]


def _inside_video(interval: list[float], field: str, where: str, duration: float) -> None:
    start, end = interval
    if end > duration + SPAN_SLACK_S or start >= duration:
        raise DataError(f"{where}: {field}: [{start}, {end}] is past the end of the video ({duration} s)")


def validate_record(record: dict, where: str = "record") -> dict:
    """The record with every key present and times as floats, or DataError naming `where` and the field."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = set(record) - set(RECORD_KEYS) - {"segments"}
    if unknown:
        raise DataError(f"{where}: unknown fields {sorted(unknown)} (a record has {list(RECORD_KEYS)})")
    rec = {key: record.get(key) for key in RECORD_KEYS}
    for key in ("id", "video", "question"):
        if not isinstance(rec[key], str) or not rec[key].strip():
            raise DataError(f"{where}: {key}: missing or empty")
    if rec["task"] not in TASKS:
        raise DataError(f"{where}: task: {rec['task']!r} is not one of {TASKS}")
    task = rec["task"]
    if rec["duration"] is not None:
        rec["duration"] = _seconds(rec["duration"], "duration", where)
        if rec["duration"] <= 0:
            raise DataError(f"{where}: duration: must be positive, got {rec['duration']}")
    if rec["clip"] is not None:
        rec["clip"] = _clip(rec["clip"], where, rec["duration"])
    if task in ("tvg", "gqa") and rec["span"] is None:
        raise DataError(f"{where}: span: a {task} record needs a span")
    if rec["span"] is not None:
        rec["span"] = _ground_truth(rec["span"], "span", where, rec["duration"])
        if rec["clip"] and not rec["clip"][0] <= rec["span"][0] < rec["span"][1] <= rec["clip"][1]:
            raise DataError(f"{where}: span: {rec['span']} is outside the clip {rec['clip']}")
    if record.get("segments") is not None:  # optional: every ground-truth segment (NExT-GQA)
        segments = record["segments"]
        if not isinstance(segments, list) or not segments or rec["span"] is None:
            raise DataError(f"{where}: segments: expected a non-empty list of [start, end] beside a span")
        rec["segments"] = [_ground_truth(seg, "segments", where, rec["duration"]) for seg in segments]
        if not all(rec["span"][0] <= a < b <= rec["span"][1] for a, b in rec["segments"]):
            raise DataError(f"{where}: segments: {rec['segments']} are not all inside the span {rec['span']}")

    options, answer = rec["options"], rec["answer"]
    if task in ("mcq", "gqa"):
        if (
            not isinstance(options, list)
            or len(options) < 2
            or not all(isinstance(o, str) and o.strip() for o in options)
        ):
            raise DataError(f"{where}: options: a {task} record needs at least two non-empty option strings")
        letters = [chr(ord("A") + i) for i in range(len(options))]
        if answer not in letters:
            raise DataError(f"{where}: answer: {answer!r} is not an option letter ({', '.join(letters)})")
    elif options is not None:
        raise DataError(f"{where}: options: a {task} record has no options")
    if task == "oeqa" and (not isinstance(answer, str) or not answer.strip()):
        raise DataError(f"{where}: answer: an oeqa record needs the answer text")
    return rec


# ---------------------------------------------------------------- reading sources and configs
def located_records(
    path, format: str = "records", *, video_ext: str = "mp4", video_root=None, skips: Skips | None = None
):
    """Yield `(where, record)` for each good record of one annotation file; problems go to `skips`.
    `video_root`: where the videos are, for a converter that must read one (temporal_r1 without
    video_length); the records still name them as the file does."""
    skips = skips or Skips(0)
    path = Path(path)
    if format not in FORMATS:
        raise DataError(f"{path}: unknown format {format!r}; known: {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: annotation file not found")
    try:
        for where, build in FORMATS[format](
            path, video_ext=video_ext.lstrip("."), video_root=video_root
        ):  # ".mp4" as "mp4"
            try:
                try:
                    record = build()
                except json.JSONDecodeError as e:
                    raise DataError(f"{where}: malformed JSON line: {e.msg}") from None
                except DataError:  # a converter's own, already saying where: not a layout error
                    raise
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
                    raise DataError(f"{where}: not in the {format} layout ({type(e).__name__}: {e})") from None
                yield where, validate_record(record, where)
            except DataError as e:
                skips(e)
    except (OSError, UnicodeDecodeError) as e:  # the file itself: a directory, not UTF-8, unreadable
        raise DataError(f"{path}: cannot read the annotation file ({type(e).__name__}: {e})") from None


def read_records(
    path, format: str = "records", *, video_ext: str = "mp4", video_root=None, skips: Skips | None = None
) -> list[dict]:
    """All good records of one annotation file in `format` (see FORMATS), videos as written there."""
    return [
        record for _, record in located_records(path, format, video_ext=video_ext, video_root=video_root, skips=skips)
    ]


DATASET_KEYS = {"path", "format", "video_root", "sample", "video_ext"}
CONFIG_KEYS = {"datasets", "seed"}


def config_datasets(config_path) -> list[dict]:
    """The checked dataset entries of a YAML data config, paths resolved against its folder."""
    config_path = Path(config_path)
    try:
        config = yaml.safe_load(config_path.read_text())
    except OSError as e:
        raise DataError(f"{config_path}: cannot read the data config: {e.strerror}") from None
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict):  # a records JSONL or an annotation file given for a config, most likely
        raise DataError(
            f"{config_path}: not a YAML data config; a config lists annotation files, e.g. "
            f"'datasets: [{{path: {config_path.name}, format: records}}]' (formats: {', '.join(FORMATS)})"
        )
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise DataError(
            f"{config_path}: unknown key {', '.join(map(repr, sorted(unknown)))} (known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    if not isinstance(config.get("datasets"), list) or not config["datasets"]:
        raise DataError(f"{config_path}: datasets: expected a non-empty list of annotation files")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"{config_path}: seed: expected an integer, got {seed!r}")
    entries = []
    for n, entry in enumerate(config["datasets"]):
        where = f"{config_path}: datasets[{n}]"
        if not isinstance(entry, dict) or "path" not in entry:
            raise DataError(f"{where}: each dataset needs at least 'path'")
        unknown = set(entry) - DATASET_KEYS
        if unknown:
            raise DataError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(DATASET_KEYS)})")
        for key in ("path", "video_root", "video_ext"):
            value = entry.get(key)
            if (value is not None or key == "path") and not (isinstance(value, str) and value.strip()):
                raise DataError(f"{where}: {key}: expected a non-empty string, got {value!r}")
        if entry.get("format", "records") not in FORMATS:
            raise DataError(f"{where}: format: {entry['format']!r} is not one of {', '.join(FORMATS)}")
        sample = entry.get("sample", 1.0)
        # YAML keeps 1 and 1.0 apart: an int is a count, a float a fraction.
        if isinstance(sample, bool) or not (
            (isinstance(sample, int) and sample >= 0) or (isinstance(sample, float) and 0 < sample <= 1)
        ):
            raise DataError(f"{where}: sample: a count (int >= 0) or a fraction in (0, 1], got {sample!r}")
        entries.append({
            "path": config_path.parent / entry["path"],
            "format": entry.get("format", "records"),
            "video_root": config_path.parent / entry["video_root"] if entry.get("video_root") else None,
            "sample": sample,
            "video_ext": entry.get("video_ext", "mp4"),
            "seed": seed,
        })  # fmt: skip
    return entries


def located_dataset(entry: dict, *, skips: Skips | None = None):
    """Yield `(where, record)` for the records one config entry selects, videos as absolute paths."""
    located = list(located_records(entry["path"], entry["format"], video_ext=entry["video_ext"],
                                   video_root=entry["video_root"], skips=skips))  # fmt: skip
    sample = entry["sample"]
    # A fraction rounds up, as Temporal-R1's loader does: a positive fraction never selects nothing.
    count = min(sample, len(located)) if isinstance(sample, int) else math.ceil(sample * len(located))
    for i in sorted(random.Random(entry["seed"]).sample(range(len(located)), count)):
        where, record = located[i]
        if entry["video_root"] and not os.path.isabs(record["video"]):
            record["video"] = str(entry["video_root"] / record["video"])
        yield where, record


def write_jsonl(rows: list[dict], path) -> Path:
    """One JSON object per line, written atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only if the write or the rename failed
    return path


def load_config(config_path, *, skips: Skips | None = None) -> list[dict]:
    """The records a YAML data config selects (datasets, formats, video roots, sampling), in order."""
    return [record for entry in config_datasets(config_path) for _, record in located_dataset(entry, skips=skips)]
