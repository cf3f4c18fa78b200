"""Video rollouts for OpenRLHF 0.11.2: the AgentExecutor that `--train.agent_func_path` loads.

OpenRLHF's own executors handle images only. This one takes a row of our prompt dataset (the
rendered prompt, `--data.image_key video` -> {"path", "clip"}, the label JSON), samples the
frames, sends vLLM the prompt with one `<|video_pad|>` and the frames with their metadata, scores
the reply with reward_plugins (the same `reward_func` as the reward file), and returns the
expanded prompt ids plus what the model family's training forward needs (Qwen2.5-VL:
`pixel_values_videos` / `video_grid_thw` / `second_per_grid_ts`, used as vLLM did through
openrlhf_video.patches; Qwen3-VL and Qwen3.5: pixels and grids, time being in the prompt text).

Every rollout's prompt ids as vLLM expanded them (its `prompt_token_ids`) must equal the ids the
training forward scores, or GRPO's ratios compare different prompts: a mismatch is counted
(`prompt_mismatch` in the training metrics) and logged with its first differing position, and
raises with OPENRLHF_VIDEO_PROMPT_GUARD=raise (the tests set it). On GPUs this catches any
vLLM/transformers pair whose processors disagree.

Settings come from the environment, as for the reward file (OpenRLHF passes no arguments):
  OPENRLHF_VIDEO_FPS=2.0                  frames sampled per second of video
  OPENRLHF_VIDEO_TOTAL_PIXELS=1605632     pixel budget of all frames (2048 visual tokens, while frames stay above min_pixels)
  OPENRLHF_VIDEO_PROMPT_GUARD=log         log | raise: what a rollout whose prompt ids differ from training's does
plus OPENRLHF_VIDEO_THINK / OPENRLHF_VIDEO_REWARD_WEIGHTS of reward_plugins/openrlhf_reward.py.
"""

import asyncio
import logging
import os
import sys
from collections import OrderedDict
from copy import deepcopy
from pathlib import Path

from openrlhf.utils.agent import AgentExecutorBase

# OpenRLHF imports this file by path: from a checkout that is not pip-installed, the packages
# beside it are not importable yet. Appended, so an installed copy still wins.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from openrlhf_video import families  # noqa: E402
from openrlhf_video.data.frames import VideoFrames, load_frames  # noqa: E402
from openrlhf_video.data.records import DataError  # noqa: E402
from reward_plugins.openrlhf_reward import reward_func  # noqa: E402
from reward_plugins.protocol import LOG_KEYS  # noqa: E402

logger = logging.getLogger(__name__)


def video_inputs(processor, prompt: str, video: VideoFrames):
    """One video prompt, for both sides of GRPO.

    Returns (vllm_prompt_ids, train_prompt_ids, mm_train_inputs, vllm_video): vLLM gets the ids
    with one `<|video_pad|>` (it expands them itself; pre-expanded ids silently make a longer,
    wrong prompt) and `(frames, metadata)`; training gets the expanded ids and the processor's
    tensors (which ones, the model family says). The metadata sets the model's time axis: its
    sampled fps gives Qwen2.5-VL's `second_per_grid_ts`, its `fps` and `frames_indices` the
    `<t seconds>` that Qwen3-VL and Qwen3.5 read. It describes the sampled range, so a clip's times
    start at 0, as its label's do (reward_plugins.record_label). vLLM 0.29 accepts this
    `(frames, metadata)` form (later versions require it) but, for Qwen2.5-VL, drops the metadata
    without openrlhf_video.patches (`_patch_vllm_video_metadata`).
    """
    metadata = video.metadata()
    hf_metadata = {key: value for key, value in metadata.items() if key != "do_sample_frames"}
    out = processor(
        text=[prompt], videos=[video.frames], video_metadata=[hf_metadata], do_sample_frames=False, return_tensors="pt"
    )
    mm_train_inputs = families.for_processor(processor).train_inputs(out)
    vllm_prompt_ids = processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return vllm_prompt_ids, out["input_ids"][0].tolist(), mm_train_inputs, (video.frames, metadata)


class PromptMismatch(RuntimeError):
    """vLLM generated from other prompt ids than training scores (OPENRLHF_VIDEO_PROMPT_GUARD=raise)."""


class AgentExecutor(AgentExecutorBase):
    def __init__(self):
        self.fps = float(os.environ.get("OPENRLHF_VIDEO_FPS", "2.0"))
        self.total_pixels = int(os.environ.get("OPENRLHF_VIDEO_TOTAL_PIXELS", str(2048 * 28 * 28)))
        # One prompt's n samples arrive together: decode and process its video once for all.
        self._prepared: OrderedDict = OrderedDict()
        self.failed_videos = 0
        self.prompt_mismatches = 0
        self.guard = os.environ.get("OPENRLHF_VIDEO_PROMPT_GUARD", "log")

    async def execute(self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine, images=None):
        video = images if isinstance(images, dict) else {"path": images, "clip": None}
        key = (str(video["path"]), str(video.get("clip")), prompt)
        if key not in self._prepared:
            self._prepared[key] = asyncio.ensure_future(asyncio.to_thread(self._prepare, hf_tokenizer, prompt, video))
            while len(self._prepared) > 8:  # ~40 MB of pixels each at 2048 visual tokens
                self._prepared.popitem(last=False)
        params = deepcopy(sampling_params)
        # A sampled vision token breaks the training forward ("video features and video tokens
        # do not match"); a random or young policy does sample them.
        params.bad_words = list(families.for_processor(hf_tokenizer).vision_tokens)
        try:
            vllm_ids, prompt_ids, mm_train_inputs, vllm_video = await self._prepared[key]
            if params.max_tokens is None:
                params.max_tokens = max(1, max_length - len(prompt_ids))
            if len(prompt_ids) + params.max_tokens > max_length:  # one long question must not end a run
                raise DataError(
                    f"{video['path']}: video prompt has {len(prompt_ids)} tokens, which with {params.max_tokens} new "
                    f"tokens exceeds --data.max_len {max_length}; lower OPENRLHF_VIDEO_TOTAL_PIXELS or raise max_len "
                    "(video prompts cannot be truncated)"
                )
        except DataError as e:
            return self._broken_video_output(prompt, label, images, hf_tokenizer, sampling_params, e)
        request_output = await llm_engine.generate(vllm_ids, params, multi_modal_data={"video": [vllm_video]})
        mismatch = self._check_prompt_ids(request_output.prompt_token_ids, prompt_ids, video["path"])
        generated = request_output.outputs[0]
        action_ids = list(generated.token_ids)

        rollout_log_probs = None
        if params.logprobs is not None and generated.logprobs is not None:
            rollout_log_probs = [0.0] * len(prompt_ids) + [
                logprobs[token].logprob for token, logprobs in zip(action_ids, generated.logprobs)
            ]
        query = prompt + hf_tokenizer.decode(action_ids, skip_special_tokens=False)
        reward = reward_func([query], [prompt], [label])
        return {
            "prompt": prompt,
            "label": label,
            "images": images,
            "mm_train_inputs": mm_train_inputs,
            "observation_tokens": prompt_ids + action_ids,
            "action_ranges": [(len(prompt_ids), len(prompt_ids) + len(action_ids))],
            "rollout_log_probs": rollout_log_probs,
            "truncated": generated.finish_reason == "length",
            "reward": reward["rewards"][0].item(),
            "scores": reward["scores"][0].item(),
            "extra_logs": {name: value[0].item() for name, value in reward["extra_logs"].items()}
            | {"video_failed": 0.0, "prompt_mismatch": float(mismatch)},
        }

    def _check_prompt_ids(self, vllm_ids, train_ids: list[int], path) -> bool:
        """The guard: True (counted, logged; raised with OPENRLHF_VIDEO_PROMPT_GUARD=raise) when the
        prompt vLLM generated from is not the one the training forward will score."""
        vllm_ids = list(vllm_ids or [])
        if vllm_ids == train_ids:
            return False
        self.prompt_mismatches += 1
        first = next(
            (i for i, (a, b) in enumerate(zip(vllm_ids, train_ids)) if a != b), min(len(vllm_ids), len(train_ids))
        )
        message = (
            f"{path}: vLLM's prompt ids differ from the training prompt ids ({self.prompt_mismatches} so far): "
            f"{len(vllm_ids)} vs {len(train_ids)} tokens, first difference at position {first} "
            f"(vLLM {vllm_ids[first : first + 8]}, training {train_ids[first : first + 8]})"
        )
        if self.guard == "raise":
            raise PromptMismatch(message)
        logger.error(message)
        return True

    def _prepare(self, processor, prompt: str, video: dict):
        frames = load_frames(video["path"], clip=video.get("clip"), fps=self.fps, total_pixels=self.total_pixels)
        return video_inputs(processor, prompt, frames)

    def _broken_video_output(self, prompt, label, images, processor, sampling_params, error):
        """A video that cannot be read (or whose prompt does not fit --data.max_len) must not stop
        a training run: the sample becomes the prompt's text and an immediate end of turn with
        reward 0, counted and logged (a warning with the running count, which Ray forwards to the
        driver's console). Its group then carries no advantage signal from it (group_norm), and
        `video_failed` shows in the training metrics, except for a group whose videos all failed:
        its reward std is 0, so the variance filter (--video.min_reward_std) drops it first."""
        self.failed_videos += 1
        logger.warning("rollout without its video (%d so far), reward 0: %s", self.failed_videos, error)
        vision_ids = set(processor.tokenizer.convert_tokens_to_ids(families.for_processor(processor).vision_tokens))
        prompt_ids = [
            t for t in processor.tokenizer(prompt, add_special_tokens=False)["input_ids"] if t not in vision_ids
        ]
        observation = prompt_ids + [processor.tokenizer.eos_token_id]
        return {
            "prompt": prompt,
            "label": label,
            "images": images,
            "mm_train_inputs": None,
            "observation_tokens": observation,
            "action_ranges": [(len(prompt_ids), len(observation))],
            "rollout_log_probs": [0.0] * len(observation) if sampling_params.logprobs is not None else None,
            "truncated": False,
            "reward": 0.0,
            "scores": 0.0,
            "extra_logs": {name: 0.0 for name in LOG_KEYS} | {"video_failed": 1.0, "prompt_mismatch": 0.0},
        }
