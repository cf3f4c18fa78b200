"""Reading what a model wrote: the answer region, the format, a time span, an option letter.

This module is the single parser for both the training rewards and the lmms-eval metrics, so a
number a model is rewarded for is the number it is evaluated on. Everything here is pure
Python, returns None (or 0) for text it cannot understand, and never raises on any string.
"""

import math
import re
import string

# Plain string searches, not regexes: a lazy `<answer>(.*?)</answer>` is quadratic on a
# response with thousands of unclosed tags, and model output is attacker-grade input.
_THINK_TO_ANSWER = re.compile(r"</think>\s*<answer>")
_ANSWER_TAG = re.compile(r"</?answer>", re.I)
# Tags are found in an ASCII-lowered copy: str.lower() changes the length of some text ("İ" -> "i̇"),
# and the positions found in the copy must cut the response itself.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# Markdown emphasis ("**Answer:** B", "from `2.0` to `5.0`") is taken out before reading letters
# and times: models write it often, and a right answer in bold is still right.
_MARKDOWN = str.maketrans("", "", "*`")


def answer_region(response: str) -> str:
    """The text a model gave as its answer: the last <answer> block, else what follows the last
    </think>, else the whole response (DESIGN.md, Rewards), less a dangling answer tag, so the
    content is scored apart from the format. Tags match in any case."""
    lower = response.translate(_ASCII_LOWER)
    end = lower.rfind("</answer>")
    start = lower.rfind("<answer>", 0, end) if end != -1 else -1
    if start != -1:
        return response[start + len("<answer>") : end].strip()
    think_end = lower.rfind("</think>")
    return _ANSWER_TAG.sub(" ", response[think_end + len("</think>") if think_end != -1 else 0 :]).strip()


def has_format(response: str, think: bool = True) -> int:
    """1 for `<think>…</think><answer>…</answer>` (think mode: nothing else around, Temporal-R1's
    rule) or for any `<answer>…</answer>` (no-think mode). Strict on purpose: the format is the
    signal that teaches the tags, while content parsing is lax."""
    if not think:
        start = response.find("<answer>")
        return int(start != -1 and response.find("</answer>", start) != -1)
    text = response.strip()
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return 0
    bridge = _THINK_TO_ANSWER.search(text, len("<think>"))
    return int(bridge is not None and bridge.end() <= len(text) - len("</answer>"))


# A time is seconds ("3.2"), mm:ss or hh:mm:ss (fractions allowed). The look-behind stops a
# match from starting inside a word or another number ("v2", "1080p", "12:34"); the look-ahead
# refuses a number in another unit ("2.5 minutes", "5 ms", "20%") or with an exponent ("1.5e1"),
# which read as seconds would be a wrong span, not an unparsed one.
_TIME = r"(?<![\w.:])-?\d+(?::\d{1,2}){0,2}(?:\.\d+)?(?!\.?\d|\s*(?:e[-+]?\d|ms\b|msecs?\b|milli|min|hours?\b|hrs?\b|h\b|%))"
_UNIT = r"(?:\s*(?:s|sec|secs|second|seconds)\b)?"
_SPAN_PAIR = re.compile(rf"({_TIME}){_UNIT}\s*(?:-+>?|–|—|~|,|to|until|till|and)\s*({_TIME}){_UNIT}", re.I)
# Temporal-R1 writes {"start_time": "3.2", "end_time": "5.1"}; models also write
# "start time: 3.2", "end=5.1" and "starts at 3.2 seconds and ends at 5.1".
_SPAN_KEY = re.compile(
    rf"\b(start|end)(?:s|ing)?(?:[ _]?time(?:stamp)?)?[\"']?\s*(?:(?:[:=]|\bat\b|\bis\b)\s*)?[\"']?({_TIME})", re.I
)


def parse_span(text: str) -> tuple[float, float] | None:
    """The (start, end) span in seconds that `text` states, or None.

    Reads JSON keys (start_time/end_time), pairs like `[3.2, 5.1]`, `3.2 - 5.1`, `3.2s to 5.1s`,
    `from 3.2 to 5.1 seconds`, `between 3.2 and 5.1`, and mm:ss / hh:mm:ss times. A start and an
    end named as such win (the first of each), else the first pair. The span is returned as stated,
    neither reordered nor clamped to the video: every official metric scores it so (temporal_iou).
    """
    text = text.translate(_MARKDOWN)
    keyed = {}
    for key, token in _SPAN_KEY.findall(text):
        keyed.setdefault(key.lower(), token)
    if len(keyed) == 2:
        tokens = (keyed["start"], keyed["end"])
    else:
        pair = _SPAN_PAIR.search(text)
        if pair is None:
            return None
        tokens = pair.groups()
    start, end = map(_seconds, tokens)
    if not (math.isfinite(start) and math.isfinite(end)):
        return None
    return (start, end)


def _seconds(token: str) -> float:
    """Seconds in a time token: "3.2", "01:05", "1:02:03.5", "-1" (inf past the float range)."""
    value = 0.0
    for part in token.lstrip("-").split(":"):
        value = value * 60 + float(part)
    return -value if token.startswith("-") else value


def temporal_iou(pred, truth) -> float:
    """IoU of a predicted (start, end) span with a true one, in [0, 1]; 0 when either is missing.

    The official formula, on the spans as given: max(min(ends) - max(starts), 0) over
    max(ends) - min(starts) (lmms-eval 0.7.3 tasks/charades_sta/utils.py and tasks/timelens/utils.py
    `iou`; Temporal-R1 eval_tvg.py `iou`; NExT-GQA code/TempGQA/eval_ground.py `get_tIoU`). So a
    reversed prediction overlaps no (ordered) truth and scores 0. A union of zero length (both spans
    one and the same point) is 0, as lmms-eval's `iou` returns: Temporal-R1's divides by zero there,
    and a reward must not raise.
    """
    if pred is None or truth is None:
        return 0.0
    (start, end), (truth_start, truth_end) = pred, truth
    union = max(end, truth_end) - min(start, truth_start)
    inter = min(end, truth_end) - max(start, truth_start)
    iou = max(inter, 0.0) / union if union > 0 else 0.0
    return iou if math.isfinite(iou) else 0.0  # spans near the float limit: inf / inf


_ANSWER_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is\b|:)", re.I)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation for open answers: lower case, no punctuation, no articles,
    and no leading "The answer is" / "Answer:"."""
    text = _ANSWER_PREFIX.sub("", text)
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


# Letter forms, most explicit first. A letter counts only when punctuation or the end of the
# line follows it (or it sits in brackets), so the article "a" or the "A" of "A person ..."
# is never taken for an option.
_BARE_LETTER = re.compile(r"\(?([A-Za-z])\)?\.?")
_MARKED_LETTER = re.compile(
    r"\b(?:answer|option|choice)\b[\"']?(?:\s*is\b)?(?:\s*[:=])?(?:\s*[\"'])?\s*"
    r"(?:\(([A-Za-z])\)|([A-Za-z])(?=[.):,\"'\]]|[ \t]*$))",
    re.I | re.M,
)
_LEADING_LETTER = re.compile(r"\(?([A-Za-z])(?:\)|[.:,](?!\w))")
_BRACKETED_LETTER = re.compile(r"\(([A-Z])\)|\[([A-Z])\]")
_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Za-z][.):]\s+")


def parse_choice(text: str, options: list[str] | None = None) -> str | None:
    """The upper-case option letter that `text` chooses, or None.

    Understands `B`, `(B)`, `B.`, `B) text`, `Answer: b`, `the answer is (C)`, `I pick [C]`, and, given the
    options, the option's own text. With options, letters outside their range are rejected.
    """
    answer = text.translate(_MARKDOWN).strip().strip("\"' \n\t")
    letter = None
    if match := _BARE_LETTER.fullmatch(answer):
        letter = match.group(1)
    elif options and (exact := _option_by_text(answer, options, exact=True)):
        return exact
    elif matches := _MARKED_LETTER.findall(answer):
        letter = "".join(matches[-1])
    elif match := _LEADING_LETTER.match(answer):
        letter = match.group(1)
    elif match := _BRACKETED_LETTER.search(answer):
        letter = match.group(1) or match.group(2)
    elif options:
        return _option_by_text(answer, options, exact=False)
    if letter is None:
        return None
    letter = letter.upper()
    if options and ord(letter) - ord("A") >= len(options):
        return None
    return letter


def _option_by_text(answer: str, options: list[str], exact: bool) -> str | None:
    """The letter of the option whose text the answer is (exact) or uniquely contains."""
    said = f" {normalize_answer(answer)} "
    found = []
    for index, option in enumerate(options):
        text = normalize_answer(_OPTION_PREFIX.sub("", str(option)))
        if text and (said.strip() == text if exact else f" {text} " in said):
            found.append(chr(ord("A") + index))
    return found[0] if len(found) == 1 else None
