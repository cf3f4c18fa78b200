"""The warm start used by the selection evidence and the CPU demo."""

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from openrlhf_video.data import label_json, load_config
from openrlhf_video.warm_start import answer_text, training_example, warm_start
from reward_plugins import score


def _records(synthetic_data, tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text(f"datasets:\n  - path: {synthetic_data / 'records.jsonl'}\n    video_root: {synthetic_data}\n")
    return load_config(config)


def test_answer_text_earns_the_full_reward(synthetic_data, tmp_path):
    # the targets are written in the format the reward parses (one parser), for every task
    records = _records(synthetic_data, tmp_path)
    clipped = [
        {**r, "clip": [1.0, r["duration"]]} for r in records if r["task"] in ("tvg", "gqa") and r["span"][0] >= 1.0
    ]
    assert clipped  # with a clip the model's time starts at the clip: so must the target's span
    for record in records + clipped:
        for think in (True, False):
            result = score(answer_text(record, think=think), label_json(record), think=think)
            assert result["reward"] == 1.0, (record["id"], think, result)


def test_warm_start_lowers_the_answer_loss(tiny_model_dir, synthetic_data, tmp_path):
    records = [r for r in _records(synthetic_data, tmp_path) if r["id"].startswith("synthetic/clip_000")]
    out = warm_start(tiny_model_dir, records, tmp_path / "warm", steps=12, seed=0)
    processor = AutoProcessor.from_pretrained(out)
    with torch.no_grad():
        losses = {}
        for name, path in (("before", tiny_model_dir), ("after", out)):
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
            losses[name] = sum(model(**training_example(processor, r)).loss.item() for r in records) / len(records)
            if name == "after":  # saved bf16-exact, like the tiny model (OpenRLHF's Actor loads bf16)
                assert all(torch.equal(p, p.to(torch.bfloat16).float()) for p in model.parameters())
    assert losses["after"] < 0.75 * losses["before"], losses  # measured: 6.25 -> 3.68
