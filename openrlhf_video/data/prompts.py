"""Prompts per task (think / no-think) and the rows OpenRLHF's prompt pipeline reads.

The answer formats asked for here are the ones `reward_plugins` parses: a span as Temporal-R1's
JSON `{"start_time": s, "end_time": e}`, an option letter, or a short phrase. Prompts are
rendered by the model's own processor, so the text holds exactly one `<|video_pad|>` per video,
which vLLM and the HF processor expand to the video's tokens.
"""

import json
from pathlib import Path

from openrlhf_video.data.records import DataError, Skips, write_jsonl
from openrlhf_video.progress import progress
from reward_plugins.scoring import record_label

# Temporal-R1's R1 system prompt (its training scripts). Its last sentence there, "Output the
# final answer in JSON format.", is grounding-specific, so it moved into the task templates.
THINK_SYSTEM_PROMPT = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. "
    "The final answer MUST BE put in <answer> </answer> tags."
)
NO_THINK_SYSTEM_PROMPT = (
    "You are a helpful assistant. Do not explain your reasoning: output only the final answer, "
    "put in <answer> </answer> tags."
)
TEMPLATES = {
    "tvg": (
        'To accurately pinpoint the event "{question}" in the video, determine the precise time period of the '
        "event. Output the final answer in JSON format with the start and end times in seconds, "
        'like {{"start_time": 1.5, "end_time": 4.0}}.'
    ),
    "mcq": "Question: {question}\nOptions:\n{options}\nAnswer with the letter of the correct option.",
    "gqa": (
        "Question: {question}\nOptions:\n{options}\nChoose the correct option and find when, in seconds, the "
        'video shows the answer. Output the final answer in JSON format, like {{"choice": "A", '
        '"start_time": 1.5, "end_time": 4.0}}.'
    ),
    "oeqa": "{question}\nAnswer with a single word or a short phrase.",
}


def build_messages(record: dict, *, think: bool = True) -> list[dict]:
    """The chat messages for one record: system prompt, then the video and the task's question."""
    options = "\n".join(f"({chr(ord('A') + i)}) {text}" for i, text in enumerate(record.get("options") or []))
    question = TEMPLATES[record["task"]].format(question=record["question"].strip(), options=options)
    return [
        {"role": "system", "content": THINK_SYSTEM_PROMPT if think else NO_THINK_SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "video", "video": record["video"]}, {"type": "text", "text": question}]},
    ]


def render_prompt(processor, record: dict, *, think: bool = True) -> str:
    """The prompt text through the model's processor chat template, ready for generation.

    `enable_thinking` is Qwen3.5's template switch (other templates ignore it): its generation
    prompt opens `<think>\n` itself unless told not to, so no-think prompts must say so. In think
    mode the opened tag belongs to the reply: the reward reads the reply from the assistant turn's
    start (`reward_plugins.protocol.response_from_query`), so it sees `<think>\n...` as the model
    continued it, and a supervised target must not open it again (`opened_think`)."""
    return processor.apply_chat_template(
        build_messages(record, think=think), tokenize=False, add_generation_prompt=True, enable_thinking=think
    )


def opened_think(prompt: str) -> str:
    """What of the reply the prompt's generation prompt already wrote: `<think>\n` (Qwen3.5's
    template in think mode), else nothing."""
    return "<think>\n" if prompt.endswith("<think>\n") else ""


def label_json(record: dict) -> str:
    """The label OpenRLHF hands the reward (`--data.label_key`): `reward_plugins.record_label` as JSON."""
    return json.dumps(record_label(record))


class VideoPromptDataset:
    """Records -> rows for OpenRLHF's PromptDataset: `prompt` (rendered), `video` ({"path", "clip"};
    pass `--data.image_key video` and our AgentExecutor loads the frames), `label` (JSON),
    `datasource` (the record's source) and `id`. Use with `--data.input_key prompt
    --data.label_key label` and without `--data.apply_chat_template` (prompts are rendered here).

    Each video must exist: a missing one raises DataError, or with `skips` is a counted, logged skip.
    """

    def __init__(
        self, records: list[dict], processor, *, think: bool = True, video_root=None, skips: Skips | None = None
    ):
        skips = skips or Skips(0)
        self.rows = []
        for record in progress(records, desc="prompts", disable=len(records) < 1000):
            # Absolute: Ray workers run where `ray start` ran, not where the rows were written.
            path = (Path(video_root, record["video"]) if video_root else Path(record["video"])).absolute()
            if not path.is_file():
                skips(DataError(f"{record['id']}: video file not found: {path}"))
                continue
            self.rows.append({
                "prompt": render_prompt(processor, record, think=think),
                "video": {"path": str(path), "clip": record.get("clip")},
                "label": label_json(record),
                "datasource": record.get("source") or "default",
                "id": record["id"],
            })  # fmt: skip

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]

    def to_jsonl(self, path) -> Path:
        """Write the rows where `--data.prompt_dataset` can read them (atomically). The first row
        with a clip goes first: `datasets` infers the JSON schema from the first 10 MiB, and where
        every clip there is null, a later [start, end] fails to load. The rest keep their order."""
        first = next((i for i, row in enumerate(self.rows) if row["video"]["clip"]), 0)
        return write_jsonl([*self.rows[first : first + 1], *self.rows[:first], *self.rows[first + 1 :]], path)
