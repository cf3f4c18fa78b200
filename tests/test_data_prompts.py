"""Prompts rendered by the tiny model's processor, their answer formats scored by reward_plugins,
and the rows pushed through OpenRLHF's own dataset loading (blending_datasets + PromptDataset)."""

import json
import shlex
from types import SimpleNamespace

import pytest

from openrlhf_video.data import DataError, Skips, VideoPromptDataset, build_messages, read_records, render_prompt
from openrlhf_video.data.prompts import NO_THINK_SYSTEM_PROMPT, THINK_SYSTEM_PROMPT
from reward_plugins import score

# What a model that follows each template exactly would answer for the synthetic records.
PERFECT_ANSWERS = {
    "tvg": lambda r: json.dumps({"start_time": r["span"][0], "end_time": r["span"][1]}),
    "mcq": lambda r: r["answer"],
    "gqa": lambda r: json.dumps({"choice": r["answer"], "start_time": r["span"][0], "end_time": r["span"][1]}),
    "oeqa": lambda r: r["answer"],
}


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def records(synthetic_data):
    return read_records(synthetic_data / "records.jsonl")


@pytest.mark.parametrize("think", [True, False])
def test_prompts_per_task_through_the_processor(processor, records, think):
    for record in records[:4]:  # one clip: tvg, mcq, gqa, oeqa
        messages = build_messages(record, think=think)
        assert messages[0]["content"] == (THINK_SYSTEM_PROMPT if think else NO_THINK_SYSTEM_PROMPT)
        prompt = render_prompt(processor, record, think=think)
        assert prompt.count("<|video_pad|>") == 1 and prompt.endswith("<|im_start|>assistant\n")
        assert prompt.index("<|video_pad|>") < prompt.index(record["question"])
        assert ("<think>" in prompt) == think
        for letter, option in zip("ABCD", record["options"] or []):
            assert f"({letter}) {option}" in prompt
        if record["task"] in ("tvg", "gqa"):
            assert '"start_time"' in prompt and '"end_time"' in prompt


@pytest.mark.parametrize("think", [True, False])
def test_answers_in_the_asked_format_get_full_reward(records, think):
    """The templates ask for exactly what reward_plugins parses: a perfect answer scores 1."""
    from openrlhf_video.data import label_json

    for record in records:
        answer = f"<answer>{PERFECT_ANSWERS[record['task']](record)}</answer>"
        response = f"<think>The square is visible for a while.</think>{answer}" if think else answer
        result = score(response, label_json(record), think=think)
        assert result["reward"] == pytest.approx(1.0), (record["id"], result)


def test_a_clipped_records_label_is_on_the_clips_time_axis_the_model_sees(synthetic_data):
    from openrlhf_video.data import label_json
    from openrlhf_video.data.frames import load_frames

    record = {
        **next(r for r in read_records(synthetic_data / "records.jsonl") if r["task"] == "tvg"),
        "clip": [1.0, 5.0],
    }
    record["span"] = [2.0, 3.5]
    label = json.loads(label_json(record))
    assert label["span"] == [1.0, 2.5] and label["duration"] == 4.0
    assert score('<answer>{"start_time": 1.0, "end_time": 2.5}</answer>', label, think=False)["iou"] == 1.0
    # The frames' metadata puts time 0 at the clip's start (the first sampled frame is ~1.0 s in).
    frames = load_frames(synthetic_data / record["video"], clip=record["clip"], cache_dir=None)
    assert frames.timestamps[0] == pytest.approx(1.0, abs=0.1) and frames.metadata()["frames_indices"][0] == 0


def test_rows_go_through_openrlhf_prompt_dataset(processor, records, synthetic_data, tmp_path):
    from openrlhf.datasets import PromptDataset
    from openrlhf.datasets.utils import blending_datasets

    dataset = VideoPromptDataset(records, processor, video_root=synthetic_data)
    rows_file = dataset.to_jsonl(tmp_path / "rows.jsonl")
    # OpenRLHF's own loading, with the flags `openrlhf-video data rows` prints.
    args = SimpleNamespace(
        data=SimpleNamespace(input_key="prompt", label_key="label", image_key="video", apply_chat_template=False),
        use_ms=False,
    )
    strategy = SimpleNamespace(args=args, print=lambda *a: None, is_rank_0=lambda: True)
    loaded = blending_datasets(str(rows_file), None, strategy)
    prompts = PromptDataset(loaded, processor.tokenizer, strategy)
    assert len(prompts) == len(records) == 32
    for i, record in enumerate(records):
        datasource, prompt, label, video = prompts[i]
        assert prompt == render_prompt(processor, record) and datasource == "synthetic"
        assert json.loads(label) == {k: record[k] for k in ("task", "answer", "options", "span", "duration")}
        assert video == {"path": str(synthetic_data / record["video"]), "clip": None}
    _, _, labels, videos = prompts.collate_fn([prompts[0], prompts[1]])
    assert [json.loads(x)["task"] for x in labels] == ["tvg", "mcq"] and videos[0]["path"].endswith("clip_000.mp4")


def test_missing_videos_are_skipped_and_labels_keep_the_annotation(processor, records, synthetic_data, caplog):
    missing = {**records[1], "id": "gone", "video": "videos/gone.mp4"}
    with pytest.raises(DataError, match="gone: video file not found: .*gone.mp4"):
        VideoPromptDataset([records[0], missing], processor, video_root=synthetic_data)
    # No duration is read from the video: the reward scores spans as stated, with no need of one,
    # and the true span goes to the label as annotated (0.5 s past the end here), not clamped.
    no_duration = {**records[0], "duration": None, "span": [1.0, records[0]["duration"] + 0.5]}
    skips = Skips(limit=1)  # training mode
    dataset = VideoPromptDataset([no_duration, missing], processor, video_root=synthetic_data, skips=skips)
    assert [row["id"] for row in dataset] == [records[0]["id"]] and len(skips.problems) == 1
    assert "gone.mp4" in caplog.text
    label = json.loads(dataset[0]["label"])
    assert label["duration"] is None and label["span"] == no_duration["span"]


def test_rows_cli_writes_what_openrlhf_reads(tiny_model_dir, synthetic_data, tmp_path, capsys):
    from openrlhf_video.data.cli import main as data_main

    config = tmp_path / "data.yaml"
    config.write_text(
        f"datasets:\n  - path: {synthetic_data / 'records.jsonl'}\n    video_root: {synthetic_data}\n    sample: 5\n"
    )
    out = tmp_path / "my rows.jsonl"
    assert data_main(["rows", str(config), "--processor", str(tiny_model_dir), "-o", str(out), "--no-think"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(NO_THINK_SYSTEM_PROMPT in r["prompt"] for r in rows)
    [hint] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train with:")]
    flags = shlex.split(hint.removeprefix("train with:"))  # a path with a space stays one argument
    assert (
        flags[:2] == ["--data.prompt_dataset", str(out)] and flags[-1] == "--video.no_think"
    )  # the reward must not want <think>


def test_rows_with_and_without_clips_load_in_any_order(processor, records, synthetic_data, tmp_path):
    """`datasets` infers a JSON file's schema from its first chunk (10 MiB, OpenRLHF's loading):
    a first chunk of null clips and a later [start, end] fail to load unless a clipped row leads."""
    import datasets

    clipped = [{**r, "id": f"{r['id']}@clip", "clip": [0.0, 4.0]} for r in records if r["task"] == "mcq"][:2]
    dataset = VideoPromptDataset(records + clipped, processor, video_root=synthetic_data)
    rows_file = dataset.to_jsonl(tmp_path / "rows.jsonl")
    loaded = datasets.load_dataset("json", data_files=str(rows_file), chunksize=4096, cache_dir=str(tmp_path / "hf"))[
        "train"
    ]
    assert loaded["id"] == [clipped[0]["id"]] + [r["id"] for r in records] + [clipped[1]["id"]]
    assert loaded[0]["video"]["clip"] == [0.0, 4.0] and loaded[1]["video"]["clip"] is None
