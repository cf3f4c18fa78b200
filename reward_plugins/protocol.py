"""OpenRLHF's reward protocol in pure Python, shared by the reward file and the HTTP server.

OpenRLHF hands over `queries`: the whole decoded sequence, special tokens and expanded
`<|video_pad|>` runs included. `score_batch` cuts the response out, scores it, and returns
plain lists; `openrlhf_reward.py` turns them into tensors, `server.py` into JSON.
"""

import logging
import math
import os
import re

from reward_plugins.scoring import COMPONENTS, score

logger = logging.getLogger("reward_plugins")

_ASSISTANT_TURN = "<|im_start|>assistant"
_RESPONSE_END = "<|im_end|>"
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]{1,32}\|>")
# Every sample gets every key: OpenRLHF concatenates extra_logs across samples and fails on
# a key only some samples have, so components a task lacks are logged as 0.
LOG_KEYS = (*COMPONENTS, "parse_failed", "unscored", "response_chars")


def response_from_query(query: str, prompt: str | None = None) -> str:
    """The model's reply inside a decoded Qwen chat sequence.

    The reply follows the assistant turn the prompt opened: the prompt's k-th
    `<|im_start|>assistant` (k = how many the prompt has), else the query's last. Without a
    chat marker the prompt is cut off as a prefix. The reply ends at `<|im_end|>`; stray
    special tokens (padding, `<|endoftext|>`) are removed.
    """
    turns = query.split(_ASSISTANT_TURN)
    if len(turns) > 1:
        opened = prompt.count(_ASSISTANT_TURN) if isinstance(prompt, str) else 0
        response = _ASSISTANT_TURN.join(turns[opened:]) if 0 < opened < len(turns) else turns[-1]
        response = response.removeprefix("\n")
    elif isinstance(prompt, str) and prompt and query.startswith(prompt):
        response = query[len(prompt) :]
    else:
        response = query
    response = response.split(_RESPONSE_END, 1)[0]
    return _SPECIAL_TOKEN.sub("", response)


def score_batch(queries, prompts, labels, *, think: bool = True, weights: dict | None = None) -> dict:
    """Score decoded queries; returns {"rewards", "scores", "extra_logs"} as lists of floats.

    `scores` is the content signal without format (IoU, accuracy, or their mean for grounded
    QA): OpenRLHF's dynamic filtering tests the group mean of `scores`, so all-right and
    all-wrong groups of a discrete task are dropped whether or not their format was right.
    A sample that cannot be scored (bad label, or a bug) gets 0 and counts in `unscored`.
    """
    prompts = list(prompts) if prompts is not None else [None] * len(queries)
    if not len(queries) == len(prompts) == len(labels):
        raise ValueError(f"query/prompts/labels lengths differ: {len(queries)}/{len(prompts)}/{len(labels)}")
    rewards, scores = [], []
    logs = {key: [] for key in LOG_KEYS}
    for query, prompt, label in zip(queries, prompts, labels):
        try:
            response = response_from_query(str(query), prompt)
            result = score(response, label, think=think, **(weights or {}))
        except Exception:  # a bug must cost one sample's reward, never the training run
            logger.exception("reward 0 after an unexpected error scoring %r", str(query)[-200:])
            response, result = "", {"reward": 0.0, "format": 0, "parsed": None, "error": "internal"}
        content = [result[name] for name in ("iou", "accuracy") if name in result]
        parsed = result["parsed"]
        rewards.append(result["reward"])
        scores.append(sum(content) / len(content) if content else 0.0)
        for name in COMPONENTS:
            logs[name].append(float(result.get(name, 0.0)))
        unscored = result["error"] is not None
        partly_parsed = isinstance(parsed, dict) and None in parsed.values()
        logs["parse_failed"].append(float(not unscored and (parsed is None or partly_parsed)))
        logs["unscored"].append(float(unscored))
        logs["response_chars"].append(float(len(response)))
    return {"rewards": rewards, "scores": scores, "extra_logs": logs}


def think_from_env() -> bool:
    """`OPENRLHF_VIDEO_THINK` (default on): the format the training reward and the eval metrics
    expect. One reader, so training and evaluation cannot understand the setting differently."""
    return os.environ.get("OPENRLHF_VIDEO_THINK", "1").strip().lower() not in ("0", "false", "no", "off")


def parse_weights(text: str) -> dict:
    """`"iou=0.7,format=0.3"` -> {"iou": 0.7, "format": 0.3}; ValueError naming the bad part."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = (piece.strip() for piece in part.partition("="))
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if name not in COMPONENTS or not math.isfinite(number):
            raise ValueError(f"reward weight {part!r}: expected NAME=NUMBER with NAME one of {list(COMPONENTS)}")
        weights[name] = number
    if not math.isfinite(sum(map(abs, weights.values()))):  # the sum bounds the reward
        raise ValueError(f"reward weights {text!r}: their sum is not a finite number")
    return weights
