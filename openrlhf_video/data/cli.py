"""`openrlhf-video data`: convert annotations to records, check a data config, write OpenRLHF rows.

openrlhf-video data convert ANNOTATIONS --format charades_sta -o records.jsonl
openrlhf-video data convert data.yaml -o records.jsonl       # every dataset a config selects
openrlhf-video data check data.yaml                          # videos decode, spans fit, answers match
openrlhf-video data rows data.yaml --processor MODEL_DIR -o rows.jsonl [--no-think]
"""

import argparse
import math
import shlex
import sys

from openrlhf_video.data.records import (
    FORMATS,
    SPAN_SLACK_S,
    DataError,
    Skips,
    config_datasets,
    load_config,
    located_dataset,
    read_records,
    validate_record,
    write_jsonl,
)
from openrlhf_video.progress import progress


def _is_config(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


def convert(args) -> int:
    skips = Skips(args.skip_bad)
    if _is_config(args.input):
        records = load_config(args.input, skips=skips)
    elif args.format is None:
        raise DataError(f"{args.input}: give --format ({', '.join(FORMATS)}) or a .yaml data config")
    else:
        records = read_records(
            args.input, args.format, video_ext=args.video_ext, video_root=args.video_root, skips=skips
        )
    write_jsonl(records, args.output)
    print(
        f"wrote {len(records)} records to {args.output}"
        + (f" ({len(skips.problems)} skipped)" if skips.problems else "")
    )
    return 0


def check(args) -> int:
    """Check every record a config selects; print a summary table and the first problems."""
    from openrlhf_video.data.frames import video_info

    rows, problems, infos, first_seen = [], [], {}, {}
    for entry_number, entry in enumerate(config_datasets(args.config)):
        skips = Skips(math.inf, quiet=True)  # collect every problem, stop at none
        located = list(located_dataset(entry, skips=skips))
        found = list(skips.problems)
        durations = {}  # video -> seconds, for the videos that decode
        for where, record in progress(located, desc=f"checking {entry['path'].name}", disable=args.no_decode):
            try:
                # Results are keyed by id downstream (selection statistics, eval logs). A file listed
                # twice in a config repeats its `where`s, so the entry is part of what is compared.
                if first_seen.setdefault(record["id"], (entry_number, where)) != (entry_number, where):
                    raise DataError(f"{where}: id: {record['id']!r} was already used at {first_seen[record['id']][1]}")
                if args.no_decode:
                    continue
                if record["video"] not in infos:
                    try:
                        infos[record["video"]] = video_info(record["video"])
                    except DataError as e:
                        infos[record["video"]] = e
                info = infos[record["video"]]
                if isinstance(info, DataError):
                    raise DataError(f"{where}: {info}")
                duration = info["duration"]
                if duration and record["duration"] and abs(record["duration"] - duration) > SPAN_SLACK_S:
                    raise DataError(
                        f"{where}: duration: the annotation says {record['duration']} s, the video {duration:.2f} s"
                    )
                validate_record({**record, "duration": record["duration"] or duration}, where)
                durations[record["video"]] = duration or 0.0
            except DataError as e:
                found.append(e)
        problems += found
        hours = "-" if args.no_decode else f"{sum(durations.values()) / 3600:.2f}"
        rows.append((str(entry["path"]), entry["format"], str(len(located)), str(len(found)),
                     str(len({r["video"] for _, r in located})), hours))  # fmt: skip

    header = ("dataset", "format", "selected", "problems", "videos", "video hours")
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if problems:
        print(f"\n{len(problems)} problem(s); the first {min(args.show, len(problems))}:")
        for problem in problems[: args.show]:
            print(f"  {problem}")
        return 1
    print("\nall records OK")
    return 0


def rows(args) -> int:
    from transformers import AutoProcessor

    from openrlhf_video.data.prompts import VideoPromptDataset

    skips = Skips(args.skip_bad)
    records = load_config(args.input, skips=skips) if _is_config(args.input) else read_records(args.input, skips=skips)
    try:
        processor = AutoProcessor.from_pretrained(args.processor)
    except (OSError, ValueError) as e:  # not a model directory, or one without a processor
        raise DataError(f"--processor {args.processor}: cannot load a processor ({type(e).__name__}: {e})") from None
    dataset = VideoPromptDataset(records, processor, think=not args.no_think, skips=skips)
    dataset.to_jsonl(args.output)
    print(
        f"wrote {len(dataset)} rows to {args.output}" + (f" ({len(skips.problems)} skipped)" if skips.problems else "")
    )
    flags = [
        "--data.prompt_dataset",
        args.output,
        "--data.input_key",
        "prompt",
        "--data.label_key",
        "label",
        "--data.image_key",
        "video",
    ] + ["--video.no_think"] * args.no_think  # the reward's format rule must be the prompts'
    print("train with:", shlex.join(flags))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="openrlhf-video data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "convert",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="write records JSONL from an annotation file or a data config",
    )
    p.add_argument("input", help="annotation file, or a .yaml data config")
    p.add_argument("--format", choices=list(FORMATS), help="the annotation layout (not for a config)")
    p.add_argument("--video-ext", default="mp4", help="video file extension for sources that name videos by id")
    p.add_argument(
        "--video-root", help="where the videos are, for temporal_r1 items without video_length (read from the video)"
    )
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--skip-bad", type=int, default=0, help="skip (and count) up to N bad records instead of failing")
    p.set_defaults(run=convert)

    p = sub.add_parser(
        "check",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="check every record of a data config; exit 1 on any problem",
    )
    p.add_argument("config")
    p.add_argument("--show", type=int, default=20, help="how many problems to print")
    p.add_argument("--no-decode", action="store_true", help="check the annotations only, not the video files")
    p.set_defaults(run=check)

    p = sub.add_parser(
        "rows",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="write the prompt rows OpenRLHF reads (--data.prompt_dataset)",
    )
    p.add_argument("input", help="a .yaml data config, or a records JSONL (videos absolute or relative to here)")
    p.add_argument("--processor", required=True, help="model directory whose processor renders the prompts")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--no-think", action="store_true", help="no-think prompts (answer only)")
    p.add_argument("--skip-bad", type=int, default=0, help="skip (and count) up to N bad records instead of failing")
    p.set_defaults(run=rows)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (DataError, OSError) as e:  # OSError: an output path that is a directory or cannot be written
        print(f"openrlhf-video data {args.command}: {e}", file=sys.stderr)
        return 2
