"""Our records as verl's RL dataset (parquet), for examples/verl_grpo.sh.

    python examples/verl_data.py --records train.jsonl --video_root /data/videos --out data/train.parquet

One row per record, in the layout verl's RLHFDataset reads: `prompt` (chat messages: our task
template, `<video>` where the video goes), `videos`, `data_source`, `reward_model.ground_truth` =
the record's label as JSON (`openrlhf_video.data.label_json`, what `compute_score` parses) and
`extra_info` (`think`: false selects the no-think format for the reward too). `--no_video` writes
text-only prompts (what tests/test_recipes_verl.py feeds verl's reward loop; the video part follows
verl's multimodal dataset convention and is not exercised by that test).
"""

import argparse
import json
import os

from openrlhf_video.data import build_messages, label_json


def verl_row(
    record: dict, *, index: int, think: bool = True, video_root: str | None = None, video: bool = True
) -> dict:
    """One parquet row for `record`."""
    system, user = build_messages(record, think=think)
    text = "".join(part["text"] for part in user["content"] if part.get("type") == "text")
    row = {
        "data_source": record.get("source") or "openrlhf_video",
        "prompt": [system, {"role": "user", "content": ("<video>" if video else "") + text}],
        "ability": record["task"],
        "reward_model": {"style": "rule", "ground_truth": label_json(record)},
        "extra_info": {"index": index, "id": record["id"], "think": think},
    }
    if video:
        row["videos"] = [{"video": os.path.join(video_root or "", record["video"])}]
    return row


def write_parquet(rows: list[dict], path: str) -> str:
    import pandas as pd

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True, help="records JSONL (`openrlhf-video data convert` writes it)")
    parser.add_argument("--out", required=True, help="parquet file to write")
    parser.add_argument("--video_root", default=None, help="directory the records' relative video paths start from")
    parser.add_argument("--no_think", action="store_true", help="no-think prompts and format reward")
    parser.add_argument("--no_video", action="store_true", help="text-only prompts")
    args = parser.parse_args(argv)
    with open(args.records) as f:
        records = [json.loads(line) for line in f if line.strip()]
    rows = [
        verl_row(record, index=i, think=not args.no_think, video_root=args.video_root, video=not args.no_video)
        for i, record in enumerate(records)
    ]
    return write_parquet(rows, args.out)


if __name__ == "__main__":
    print(main())
