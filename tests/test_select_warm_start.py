"""The warm start used by the selection evidence and the CPU demo."""

import pytest
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


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "qwen3_5"])
def test_the_r1_format_holds_whether_or_not_the_template_opens_the_thinking(family, synthetic_data, tmp_path):
    """Qwen3.5's template opens `<think>\\n` in the generation prompt (and closes it empty when
    thinking is off): the prompt, the supervised target and the reward must agree on where the
    reply starts. Scored as rollouts are: the whole sequence through OpenRLHF's reward_func."""
    from openrlhf_video import families
    from openrlhf_video.data import render_prompt
    from openrlhf_video.tiny_model import build_tiny_model
    from reward_plugins.openrlhf_reward import reward_func

    processor = AutoProcessor.from_pretrained(build_tiny_model(family))
    record = next(r for r in _records(synthetic_data, tmp_path) if r["task"] == "mcq")
    for think in (True, False):
        prompt = render_prompt(processor, record, think=think)
        assert prompt.endswith("<think>\n") == (think and families.get(family).think_opened_by_template)
        example = training_example(processor, record, think=think)
        sequence = processor.tokenizer.decode(example["input_ids"][0])
        assert "<think><think>" not in sequence.replace("\n", "")  # the target does not open it again
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("reward_plugins.openrlhf_reward.THINK", think)
            reward = reward_func([sequence], [prompt], [label_json(record)])
        assert reward["rewards"].tolist() == [1.0] and reward["extra_logs"]["format"].tolist() == [1.0]
