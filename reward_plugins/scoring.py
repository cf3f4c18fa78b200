"""The paper's dual reward: `score(response, label)` for every task.

Discrete rewards (option letter, exact open answer) and the continuous temporal IoU share one
entry, plus the format reward. The total is a weighted sum whose defaults per task live in
PRESETS; keyword weights override them.
"""

import itertools
import json
import logging
import math

from reward_plugins.parsing import (
    answer_region,
    has_format,
    normalize_answer,
    parse_choice,
    parse_span,
    temporal_iou,
)

logger = logging.getLogger("reward_plugins")
_unusable_labels = itertools.count(1)  # next() is atomic: reward threads share it


def warn_unusable_label(error) -> None:
    """A warning per unusable label would flood a long run's log (one per sample scored): the
    first five are shown, then every 1000th, each with the running count."""
    count = next(_unusable_labels)
    if count <= 5 or count % 1000 == 0:
        more = "; only every 1000th is shown from here" if count == 5 else ""
        logger.warning("reward 0 for an unusable label (%d so far%s): %s", count, more, error)


# Default weights per task; each preset sums to 1 so every total reward lies in [0, 1].
# tvg is Temporal-R1's grounding reward 0.5 * IoU + 0.5 * format; the answer tasks mirror it
# with accuracy in place of IoU; grounded QA splits the content half between its two signals.
PRESETS = {
    "tvg": {"iou": 0.5, "format": 0.5},
    "mcq": {"accuracy": 0.5, "format": 0.5},
    "oeqa": {"accuracy": 0.5, "format": 0.5},
    "gqa": {"accuracy": 0.25, "iou": 0.25, "format": 0.5},
}
COMPONENTS = ("format", "iou", "accuracy")
LABEL_FIELDS = ("task", "answer", "options", "span", "duration")


def record_label(record: dict) -> dict:
    """A record's label (DESIGN.md): its task, answer, options, span and duration, plus its
    `segments` when it has them (NExT-GQA: each true segment, scored by the best one). A record's
    times are in the whole video's seconds, but the model only sees its clip, on a time axis that
    starts at the clip's start (VideoFrames.metadata; qwen-vl-utils alike in eval), so with a clip
    the span, segments and duration are given on that axis: the answer the model can give.
    ValueError for a bad clip."""
    label = {key: record.get(key) for key in LABEL_FIELDS}
    if record.get("segments"):
        label["segments"] = record["segments"]
    clip = record.get("clip")
    if clip and label["span"] is not None:
        if not (isinstance(clip, (list, tuple)) and len(clip) == 2 and all(map(_is_number, clip))):
            raise ValueError(f"record field 'clip' must be [start_s, end_s] or null, got {clip!r}")
        label["duration"] = clip[1] - clip[0]
        label["span"] = _shifted(label["span"], clip[0])
        if "segments" in label:
            label["segments"] = [_shifted(segment, clip[0]) for segment in label["segments"]]
    return label


def _shifted(interval, offset: float):
    """[start, end] moved `offset` seconds earlier; anything else unchanged, for parse_label to name."""
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(map(_is_number, interval)):
        return [interval[0] - offset, interval[1] - offset]
    return interval


def parse_label(label) -> dict:
    """Check a label (dict or its JSON text) and return its fields normalised; raise ValueError
    naming the bad field. Spans become float tuples and MCQ answers upper-case letters."""
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except (ValueError, RecursionError) as error:  # RecursionError: "[[[[…" nested too deep
            raise ValueError(f"label is not JSON: {error}: {label[:200]!r}") from None
    if not isinstance(label, dict):
        raise ValueError(f"label must be a JSON object, got {type(label).__name__}")
    task = label.get("task")
    if not isinstance(task, str) or task not in PRESETS:
        raise ValueError(f"label field 'task' must be one of {sorted(PRESETS)}, got {task!r}")
    options = label.get("options")
    if options is not None and not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
        raise ValueError(f"label field 'options' must be a list of strings or null, got {options!r}")
    if task == "gqa" and not options:  # as for a gqa record: an open answer and a span in one reply do not parse apart
        raise ValueError(f"label field 'options' must list the options for task 'gqa', got {options!r}")
    duration = label.get("duration")
    if duration is not None and not (_is_number(duration) and duration > 0):
        raise ValueError(f"label field 'duration' must be a positive number or null, got {duration!r}")

    span = segments = None
    if task in ("tvg", "gqa"):
        span = _true_span(label.get("span"), f"'span' for task {task!r}")
        given = label.get("segments")
        if given is not None and not (isinstance(given, list) and given):
            raise ValueError(
                f"label field 'segments' must be a non-empty list of [start_s, end_s] or absent, got {given!r}"
            )
        segments = tuple(_true_span(s, "'segments'") for s in given) if given else (span,)

    answer = None
    if task != "tvg":
        answer = label.get("answer")
        if not isinstance(answer, (str, int, float)) or isinstance(answer, bool) or not str(answer).strip():
            raise ValueError(f"label field 'answer' must be a non-empty string for task {task!r}, got {answer!r}")
        if task in ("mcq", "gqa"):  # the gold answer goes through the model's parser
            answer = parse_choice(str(answer), options)
            if answer is None:
                raise ValueError(
                    f"label field 'answer' {label['answer']!r} is not an option letter or an option's text"
                )
        else:
            answer = normalize_answer(str(answer))
            if not answer:  # "a", "the", "?": nothing is left to match a reply against
                raise ValueError(f"label field 'answer' {label['answer']!r} is empty once normalised")
    return {
        "task": task,
        "answer": answer,
        "options": options,
        "span": span,
        "segments": segments,
        "duration": duration,
    }


def _true_span(value, field: str) -> tuple[float, float]:
    """A ground-truth span as the annotation gives it: not reordered or clamped, as the official
    metrics use it (a start of -0.1 s is data); one that does not start before it ends is an error."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value))):
        raise ValueError(f"label field {field} must be [start_s, end_s], got {value!r}")
    start, end = float(value[0]), float(value[1])
    if not start < end:
        raise ValueError(f"label field {field} must start before it ends, got {value!r}")
    return (start, end)


def _is_number(value) -> bool:
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # a JSON integer too large for a float
        return False


def best_iou(span, segments) -> float:
    """The span's IoU with its best-matching true segment (NExT-GQA code/TempGQA/eval_ground.py
    `eval_ground`: the best over a question's segments; one segment is the plain IoU). The reward
    and every grounding metric take this one value, so they cannot disagree on an answer."""
    return max(temporal_iou(span, segment) for segment in segments)


def score(response: str, label: dict | str, *, think: bool = True, **weights) -> dict:
    """Score one response against its label.

    Returns `reward` (weighted sum, finite), `format` (0/1), the task's components (`iou`,
    `accuracy`), `parsed` (what was understood, None if nothing) and `error` (None, or why the
    label was unusable: then the reward is 0 and the problem is logged). Weights are keyword
    overrides of PRESETS[task] (`iou=0.7, format=0.3`); components a task lacks are ignored.
    """
    unknown = set(weights) - set(COMPONENTS)
    # The sum bounds the reward (every component is in [0, 1]): finite weights can still overflow it.
    if unknown or not all(map(_is_number, weights.values())) or not math.isfinite(sum(map(abs, weights.values()))):
        raise TypeError(f"reward weights must be finite numbers named {list(COMPONENTS)}, got {weights}")
    if not isinstance(response, str):
        response = "" if response is None else str(response)
    try:
        label = parse_label(label)
    except ValueError as error:
        warn_unusable_label(error)
        return {"reward": 0.0, "format": 0, "parsed": None, "error": str(error)}

    task = label["task"]
    text = answer_region(response)
    result = {"format": has_format(response, think)}
    if task == "tvg":
        parsed = parse_span(text)
        result["iou"] = best_iou(parsed, label["segments"])
    elif task == "gqa":
        choice = parse_choice(text, label["options"])
        span = parse_span(text)
        parsed = {"choice": choice, "span": span} if choice or span else None
        result["accuracy"] = float(choice == label["answer"])
        result["iou"] = best_iou(span, label["segments"])
    elif task == "mcq":
        parsed = parse_choice(text, label["options"])
        result["accuracy"] = float(parsed == label["answer"])
    else:  # oeqa
        parsed = normalize_answer(text) or None
        result["accuracy"] = float(parsed == label["answer"])

    result["reward"] = float(sum(weights.get(name, default) * result[name] for name, default in PRESETS[task].items()))
    result["parsed"] = parsed
    result["error"] = None
    return result
