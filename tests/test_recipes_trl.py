"""TRL's own GRPOTrainer (trl 1.16.0) trains with `reward_plugins.adapters.trl_reward_func`, run by
examples/trl_grpo.py, and the rewards it logs are `score()`'s on the same completions.

The policy is a tiny Qwen2ForCausalLM wired to answer from a fixed set (see `scripted_model`): a
random model writes no tags and no spans, so every reward would be 0 under any label and a reward
function that ignored the label would pass. These answers score differently under each record's
label (grounding on a clip's time axis, multiple choice, grounded QA, open answer; with and
without the think format), so the comparison fails unless each completion is scored against its
own record's label.
"""

import importlib.util
import json
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest

from reward_plugins import record_label, score
from reward_plugins.scoring import COMPONENTS

REPO = Path(__file__).resolve().parents[1]

RECORDS = [
    {"id": "charades/3MSZA#0", "task": "tvg", "video": "3MSZA.mp4", "question": "person opens the door",
     "options": None, "answer": None, "span": [12.0, 17.0], "duration": 30.0, "clip": [10.0, 20.0],
     "source": "charades_sta"},
    {"id": "mvbench/7#0", "task": "mcq", "video": "7.mp4", "question": "What colour is the square?",
     "options": ["red", "green", "blue"], "answer": "B", "span": None, "duration": 10.0, "clip": None,
     "source": "mvbench"},
    {"id": "nextgqa/12#3", "task": "gqa", "video": "12.mp4", "question": "Why does the man wave?",
     "options": ["to stop a car", "to greet a friend"], "answer": "B", "span": [2.0, 7.0], "duration": 20.0,
     "clip": None, "source": "nextgqa"},
    {"id": "synthetic/4#1", "task": "oeqa", "video": "4.mp4", "question": "When is the door open?",
     "options": None, "answer": "2 to 7", "span": None, "duration": 10.0, "clip": None, "source": "synthetic"},
]  # fmt: skip

# What the policy can write: token -> the tokens that may follow (equally likely); any other token
# (the prompt's last) is followed by one of START. Four answers: with or without the think part,
# a span or an option letter.
START = ["<think>", "<answer>"]
NEXT = {
    "<think>": ["Ġthe"], "Ġthe": ["</think>"], "</think>": ["<answer>"], "<answer>": ["2", "B"],
    "2": ["Ġto"], "Ġto": ["Ġ"], "Ġ": ["7"], "7": ["</answer>"], "B": ["</answer>"], "</answer>": ["<|im_end|>"],
}  # fmt: skip
ANSWERS = {
    "<think> the</think><answer>2 to 7</answer>",
    "<think> the</think><answer>B</answer>",
    "<answer>2 to 7</answer>",
    "<answer>B</answer>",
}


def scripted_model(tokenizer_dir: Path, out_dir: Path) -> Path:
    """A Qwen2ForCausalLM whose next token depends on the current one only, per NEXT: its layers
    add nothing (output projections zero), embeddings are one-hot and the LM head puts a logit of
    40 on each allowed successor, so sampling at temperature 1 follows NEXT. It trains like any
    model (the zeroed projections get gradients); two steps at a small learning rate keep the
    margin. Saved with the project's tiny tokenizer plus the four tags as tokens."""
    import torch
    from transformers import AddedToken, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    # A text model's tokenizer, not the VL processor's part: TRL's AutoProcessor then loads the tokenizer.
    tokenizer.init_kwargs.pop("processor_class", None)
    tokenizer._processor_class = None
    tokenizer.add_tokens(
        [AddedToken(tag, normalized=False) for tag in ("<think>", "</think>", "<answer>", "</answer>")]
    )
    for answer in ANSWERS:  # each token of an answer has its own place in NEXT
        tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode(answer, add_special_tokens=False))
        assert all(token in NEXT for token in tokens), tokens
    vocab = len(tokenizer)
    hidden = -(-vocab // 64) * 64
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=False,
        bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    ids = tokenizer.convert_tokens_to_ids
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.copy_(torch.eye(vocab, hidden))
        head = torch.zeros(vocab, hidden)
        for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(vocab)))):
            for successor in NEXT.get(token, START):
                head[ids(successor), token_id] = 40.0 / hidden**0.5  # the final RMSNorm scales one-hot by sqrt(hidden)
        model.lm_head.weight.copy_(head)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _example():
    spec = importlib.util.spec_from_file_location("trl_grpo_example", REPO / "examples" / "trl_grpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def policy(tiny_model_dir, tmp_path_factory) -> Path:
    return scripted_model(tiny_model_dir, tmp_path_factory.mktemp("scripted-qwen2"))


@pytest.mark.parametrize("label_column", [True, False], ids=["label-column", "record-columns"])
def test_trl_grpo_trainer_logs_the_rewards_score_gives(policy, tmp_path, label_column, pins):
    example = _example()
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    out = tmp_path / "run"
    trainer = example.main([
        "--model", str(policy), "--records", str(records), "--label_column", str(label_column).lower(),
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--num_generations", "2", "--max_completion_length", "16", "--learning_rate", "1e-5",
        "--logging_steps", "1", "--log_completions", "true", "--report_to", "none", "--save_strategy", "no",
        "--use_cpu", "true", "--bf16", "false", "--use_vllm", "false", "--seed", "0", "--dataloader_num_workers", "0",
    ])  # fmt: skip
    assert trainer.state.global_step == 2
    assert version("trl") == pins("openrlhf-video", "recipes")["trl"]  # the release setup.py's [recipes] names

    # The records by their prompt: the user message is the record's question in its task template.
    by_prompt = {example.prompt_messages(record)[1]["content"]: record for record in RECORDS}
    logged = pd.concat([pd.read_parquet(path) for path in sorted((out / "completions").glob("*.parquet"))])
    assert len(logged) == 8 and set(logged["step"]) == {1, 2}  # 2 steps x 2 prompts x 2 completions
    expected_rewards = []
    for row in logged.itertuples():
        record = by_prompt[row.prompt[-1]["content"]]
        completion = row.completion[-1]["content"]
        assert completion in ANSWERS
        expected = score(completion, record_label(record))
        expected_rewards.append(expected["reward"])
        assert row.trl_reward_func == pytest.approx(expected["reward"]), (record["id"], completion)
        for name in COMPONENTS:  # the adapter's extra columns: None where the task has no such component
            value = getattr(row, name)
            assert (value is None or pd.isna(value)) if name not in expected else value == expected[name]
    assert len({record["id"] for record in by_prompt.values()}) == len(RECORDS)
    assert len(set(expected_rewards)) > 1  # the comparison can tell labels apart

    # The logged mean per step is the mean of score() over that step's completions.
    logged["expected"] = expected_rewards
    means = logged.groupby("step")["expected"].mean()
    history = {entry["step"]: entry for entry in trainer.state.log_history if "rewards/trl_reward_func/mean" in entry}
    for step, mean in means.items():
        assert history[step]["rewards/trl_reward_func/mean"] == pytest.approx(mean)
        assert history[step]["reward_plugins/format"] == pytest.approx(logged[logged.step == step]["format"].mean())


def test_trl_reward_func_reads_think_none_as_the_default():
    """A `think` column with a null (datasets fills a row's missing key with None) means think mode."""
    from reward_plugins.adapters import trl_reward_func

    label = json.dumps(record_label(RECORDS[1]))
    rewards = trl_reward_func(["p"] * 3, ["<answer>B</answer>"] * 3, think=[None, False, True], label=[label] * 3)
    assert rewards == [0.5, 1.0, 0.5]
