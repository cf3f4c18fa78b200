"""GRPO with TRL's GRPOTrainer on our records, rewarded by reward_plugins (the Temporal-R1 dual reward).

    pip install "openrlhf-video[recipes]"    # trl 1.16.0 (and verl 0.9.1)
    python examples/trl_grpo.py --model Qwen/Qwen2.5-0.5B-Instruct --records train.jsonl \
        --output_dir runs/trl --num_generations 8 --max_completion_length 256

TRL's GRPO generates from text, so the prompt is the record's question in our task templates
(`openrlhf_video.data.build_messages`, without the video). The reward sees each record's label:
a `label` column (JSON, what `openrlhf-video data rows` writes) or, with `--label_column false`,
the record's own columns (task, answer, options, span, duration, clip). Any GRPOConfig flag can be
added (`--learning_rate`, `--use_vllm`, ...); tests/test_recipes_trl.py runs this script.
"""

import json
import sys
from dataclasses import dataclass, field

from openrlhf_video.data import build_messages, label_json
from reward_plugins.adapters import trl_reward_func

RECORD_COLUMNS = ("id", "task", "question", "options", "answer", "span", "duration", "clip")


@dataclass
class Arguments:
    model: str = field(metadata={"help": "model id or path (a causal LM)"})
    records: str = field(metadata={"help": "records JSONL (`openrlhf-video data convert` writes it)"})
    label_column: bool = field(default=True, metadata={"help": "a JSON `label` column, else the record's columns"})
    think: bool = field(default=True, metadata={"help": "<think>…</think><answer>…</answer> (false: <answer> only)"})


def prompt_messages(record: dict, *, think: bool = True) -> list[dict]:
    """The training prompt's system and user messages, the user's as text (no video part)."""
    system, user = build_messages(record, think=think)
    text = "".join(part["text"] for part in user["content"] if part.get("type") == "text")
    return [system, {"role": "user", "content": text}]


def build_dataset(records: list[dict], *, label_column: bool = True, think: bool = True):
    """A conversational prompt dataset with the label as a `label` column or as the record's columns."""
    from datasets import Dataset

    rows = []
    for record in records:
        row = {"prompt": prompt_messages(record, think=think), "think": think}  # TRL hands columns to the reward
        if label_column:
            row["label"] = label_json(record)  # {task, answer, options, span, duration}, on the clip's axis
        else:
            row.update({name: record.get(name) for name in RECORD_COLUMNS})
        rows.append(row)
    return Dataset.from_list(rows)


def main(argv: list[str] | None = None):
    from trl import GRPOConfig, GRPOTrainer, TrlParser

    args, config = TrlParser((Arguments, GRPOConfig)).parse_args_and_config(argv)
    with open(args.records) as f:
        records = [json.loads(line) for line in f if line.strip()]
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=[trl_reward_func],
        args=config,
        train_dataset=build_dataset(records, label_column=args.label_column, think=args.think),
    )
    trainer.train()
    return trainer


if __name__ == "__main__":
    main(sys.argv[1:])
