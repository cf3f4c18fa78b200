"""End to end through OpenRLHF 0.11.2's own code: it loads reward_plugins/openrlhf_reward.py the
way `--reward.remote_url file.py` does, calls it, and turns the result into Experiences."""

import asyncio
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REWARD_FILE = Path(__file__).resolve().parents[1] / "reward_plugins" / "openrlhf_reward.py"
PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|video_pad|><|vision_end|>Answer about the video.<|im_end|>\n<|im_start|>assistant\n"
)
SAMPLES = [  # (response, label, reward)
    (
        '<think>door</think><answer>{"start_time": "3.0", "end_time": "5.0"}</answer>',
        {"task": "tvg", "span": [3, 5]},
        1.0,
    ),
    ("<think>cat</think><answer>(B)</answer>", {"task": "mcq", "answer": "B", "options": ["dog", "cat"]}, 1.0),
    ("The answer is a dog.", {"task": "oeqa", "answer": "dog"}, 0.5),
    (
        "<think>x</think><answer>A, 0 - 10</answer>",
        {"task": "gqa", "answer": "A", "options": ["x", "y"], "span": [0, 5]},
        0.875,
    ),
    ("<think>x</think><answer>no idea</answer>", '{"task": "tvg", "span": [1, 2]}', 0.5),
    ("anything", {"task": "unknown"}, 0.0),
]


def decoded(response):
    return PROMPT.replace("<|video_pad|>", "<|video_pad|>" * 500) + response + "<|im_end|><|endoftext|>"


@pytest.fixture(scope="module")
def executor():
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    return SingleTurnAgentExecutor(remote_rm_url=[str(REWARD_FILE)])


def test_openrlhf_loads_the_file_and_gets_rewards(executor):
    assert executor.reward_func is not None and executor.reward_func.__module__ == "reward_func"
    queries = [decoded(response) for response, _, _ in SAMPLES]
    labels = [label for _, label, _ in SAMPLES]
    # OpenRLHF's own call: one thread per sample, lists of length 1.
    replies = asyncio.run(executor._fetch_rewards_via_func(queries, [PROMPT] * len(queries), labels))
    rewards = [reply["rewards"].item() for reply in replies]
    assert rewards == pytest.approx([reward for _, _, reward in SAMPLES])
    for reply in replies:
        assert isinstance(reply["rewards"], torch.Tensor) and reply["scores"].shape == (1,)
        assert set(reply["extra_logs"]) == {"format", "iou", "accuracy", "parse_failed", "unscored", "response_chars"}
    assert [reply["extra_logs"]["parse_failed"].item() for reply in replies] == [0, 0, 0, 0, 1, 0]
    assert [reply["extra_logs"]["unscored"].item() for reply in replies] == [0, 0, 0, 0, 0, 1]


class ScriptedEngine:
    """Stands in for OpenRLHF's vLLM actor and replays one fixed reply: the test needs a reply
    whose reward is known, and a tiny random model only writes noise."""

    def __init__(self, token_ids):
        self.token_ids = token_ids

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        output = SimpleNamespace(token_ids=self.token_ids, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


def test_openrlhf_rollout_decodes_the_sequence_and_scores_it(executor, tiny_model_dir):
    """OpenRLHF's whole single-turn rollout: tokenize the chat prompt, append the reply, decode
    with special tokens (the expanded video pad run included) and call the reward file."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "When does the door open?"}]}]
    prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    prompt = prompt.replace("<|video_pad|>", "<|video_pad|>" * 256)  # as the video processor expands it
    reply = tokenizer.encode(
        '<think>the door moves</think><answer>{"start_time": "3", "end_time": "6"}</answer><|im_end|>'
    )
    label = {"task": "tvg", "span": [3, 5], "duration": 10}
    params = SimpleNamespace(max_tokens=64, logprobs=None)  # the two SamplingParams fields execute() reads

    out = asyncio.run(executor.execute(prompt, label, params, 4096, tokenizer, ScriptedEngine(reply)))
    assert out["reward"].tolist() == pytest.approx([0.5 * 2 / 3 + 0.5])
    assert out["scores"].tolist() == pytest.approx([2 / 3])
    assert out["extra_logs"]["format"].item() == 1.0 and out["extra_logs"]["parse_failed"].item() == 0.0


def test_rewards_flow_into_openrlhf_experiences(executor):
    """Per-sample results of mixed tasks must concatenate and split in OpenRLHF's Experience
    code (a key only some samples log would fail there)."""
    from openrlhf.trainer.ppo_utils.experience import Experience, split_experience_batch
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    experiences = []
    for response, label, _ in SAMPLES:
        [reply] = asyncio.run(executor._fetch_rewards_via_func([decoded(response)], [PROMPT], [label]))
        rollout = {  # the fields SingleTurnAgentExecutor.execute returns
            "prompt": PROMPT,
            "label": label,
            "images": None,
            "mm_train_inputs": None,
            "observation_tokens": [1, 2, 3, 4],
            "action_ranges": [(2, 4)],
            "rollout_log_probs": None,
            "truncated": False,
            "reward": reply["rewards"],
            "scores": reply["scores"],
            "extra_logs": reply["extra_logs"],
        }
        # The method reads nothing from its instance; calling it unbound avoids starting Ray.
        experiences.append(SamplesGenerator._process_response_into_experience(None, rollout, max_len=16))
    batch = Experience.concat_experiences(experiences, pad_token_id=0)
    assert batch.info["iou"].shape == (len(SAMPLES),)
    assert batch.info["reward"].flatten().tolist() == pytest.approx([r for _, _, r in SAMPLES])
    assert len(split_experience_batch(batch)) == len(SAMPLES)


def test_reward_func_never_raises_on_malformed_arguments(executor):
    out = executor.reward_func(None, None, None)
    assert out["rewards"].tolist() == [0.0] and out["extra_logs"]["unscored"].tolist() == [1.0]
    out = executor.reward_func(["a", "b"], None, [{"task": "tvg", "span": [0, 1]}])  # length mismatch
    assert out["rewards"].tolist() == [0.0, 0.0] and all(math.isfinite(v) for v in out["scores"].tolist())


def test_no_think_and_weights_come_from_the_environment(monkeypatch):
    import importlib.util

    monkeypatch.setenv("OPENRLHF_VIDEO_THINK", "0")
    monkeypatch.setenv("OPENRLHF_VIDEO_REWARD_WEIGHTS", "iou=1.0,format=0.0")
    spec = importlib.util.spec_from_file_location("reward_func_env", REWARD_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.reward_func([decoded("<answer>3 - 4</answer>")], [PROMPT], [{"task": "tvg", "span": [3, 5]}])
    assert out["rewards"].item() == pytest.approx(0.5) and out["extra_logs"]["format"].item() == 1.0

    monkeypatch.setenv("OPENRLHF_VIDEO_REWARD_WEIGHTS", "iou=lots")
    with pytest.raises(ValueError, match="reward weight"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
