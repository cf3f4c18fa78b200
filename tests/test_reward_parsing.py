"""Table tests for the one parser shared by rewards and metrics: spans, option letters, regions."""

import pytest

from reward_plugins import answer_region, has_format, parse_choice, parse_span, temporal_iou


@pytest.mark.parametrize(
    "text, span",
    [
        ('{"start_time": "3.2", "end_time": "5.1"}', (3.2, 5.1)),  # Temporal-R1, strings
        ('{"start_time": 3.2, "end_time": 5.1}', (3.2, 5.1)),  # numbers
        ('{"end_time": 5.1, "start_time": 3.2}', (3.2, 5.1)),
        ("[3.2, 5.1]", (3.2, 5.1)),
        ("(3.2,5.1)", (3.2, 5.1)),
        ("3.2 - 5.1", (3.2, 5.1)),
        ("3.2-5.1", (3.2, 5.1)),
        ("3.2–5.1", (3.2, 5.1)),
        ("3.2 --> 5.1", (3.2, 5.1)),
        ("3.2s to 5.1s", (3.2, 5.1)),
        ("3.2 s - 5.1 s", (3.2, 5.1)),
        ("from 3.2 to 5.1 seconds", (3.2, 5.1)),
        ("from 2.5s to 7s", (2.5, 7.0)),
        ("The door opens between 3.2 and 5.1.", (3.2, 5.1)),
        ("between 2.5 seconds and 7 seconds", (2.5, 7.0)),
        ("It starts at 3.2 seconds and ends at 5.1 seconds.", (3.2, 5.1)),
        ("start time: 3.2, end time: 5.1", (3.2, 5.1)),
        ("00:03 - 00:05", (3.0, 5.0)),
        ("from 1:05 to 1:30", (65.0, 90.0)),
        ("00:01:02.5 to 00:01:05", (62.5, 65.0)),
        ("The event occurs in the segment 12 - 18 of the video.", (12.0, 18.0)),
        ("Sure! The person opens the door from 3.2 to 5.1 seconds, then leaves.", (3.2, 5.1)),
        ("5.1 - 3.2", (5.1, 3.2)),  # reversed: as stated (the metrics give it IoU 0)
        ("[12, 3]", (12.0, 3.0)),
        ('{"start_time": 9, "end_time": 4}', (9.0, 4.0)),
        ("[-1, 50]", (-1.0, 50.0)),  # outside any video: as stated, never clamped
        ("**Start time:** 2.0 s, **End time:** 5.0 s", (2.0, 5.0)),  # Markdown emphasis
        ("The event occurs from **2.0s** to **5.0s**.", (2.0, 5.0)),
        ("from `2.0` to `5.0`", (2.0, 5.0)),
    ],
)
def test_parse_span_reads_what_models_write(text, span):
    assert parse_span(text) == pytest.approx(span)


@pytest.mark.parametrize(
    "text",
    [
        "", "no idea", "3.2", "around 5 seconds", "version v2.5-3", "<answer></answer>", "1080p video",
        # numbers in another unit, or with an exponent: no span rather than a wrong one in seconds
        "from 1.5 to 2.5 minutes", "from 1.5 min to 2.5 min", "2 to 5 ms", "from 20% to 40%", "1 - 2 hours",
        '{"start_time": 1.5e1, "end_time": 2.2e1}',
    ],
)  # fmt: skip
def test_parse_span_returns_none_without_a_span(text):
    assert parse_span(text) is None


def test_parse_span_rejects_infinite_numbers():
    assert parse_span("1" * 400 + " - 5") is None


@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("**C**", "C"),
        ("**Answer:** B", "B"),  # Markdown emphasis
        ("Answer: **B**", "B"),
        ("The answer is **B**.", "B"),
        ("Answer: `B`", "B"),
        ("B) the man opens the door", "B"),
        ("(B) the man opens the door", "B"),
        ("C. He is cooking", "C"),
        ("D: a red car", "D"),
        ("Answer: b", "B"),
        ("answer: (d)", "D"),
        ("The answer is (C).", "C"),
        ("the answer is C", "C"),
        ("The correct option is D.", "D"),
        ('{"answer": "B"}', "B"),
        ("I would pick (C) here because of the door.", "C"),
        ("I would pick [C] here.", "C"),
        ("Looking closely, the answer is A.", "A"),
    ],
)
def test_parse_choice_reads_letters(text, letter):
    assert parse_choice(text) == letter


@pytest.mark.parametrize(
    "text",
    [
        "I think a cat is there",
        "There is a dog.",
        "Because the man opens it",
        "A person opens the door",  # the article "A", not option A
        "Answer: a person opens the door",
        "Dancing",
        "",
        "none of them",
    ],
)
def test_parse_choice_ignores_articles_and_capitalised_words(text):
    assert parse_choice(text) is None


def test_parse_choice_takes_a_lone_letter_in_any_case():
    assert parse_choice("a") == "A" and parse_choice(" (c) ") == "C"


OPTIONS = ["A person opens the door", "The cat sleeps", "Dog", "(D) a red car"]


@pytest.mark.parametrize(
    "text, letter",
    [
        ("A person opens the door", "A"),  # starts with the article, matched by its text
        ("the cat sleeps.", "B"),
        ("dog", "C"),
        ("a red car", "D"),  # the option's own "(D)" label is not part of its text
        ("I am sure the cat sleeps in the video", "B"),
        ("B", "B"),
        ("E", None),  # out of range for four options
        ("Answer: F", None),
    ],
)
def test_parse_choice_with_options(text, letter):
    assert parse_choice(text, OPTIONS) == letter


def test_parse_choice_with_options_refuses_an_ambiguous_text():
    assert parse_choice("the dog and the cat sleeps", ["dog", "the cat sleeps"]) is None


@pytest.mark.parametrize(
    "response, region",
    [
        ("<think>1 - 2</think><answer>3 - 5</answer>", "3 - 5"),
        ("<answer>A</answer> wait <answer> B </answer>", "B"),  # the last block
        ("<think>maybe A</think> The answer is B", "The answer is B"),  # after </think>
        ("<think>a</think>x</think> C", "C"),  # after the last </think>
        ("just B", "just B"),  # the whole response
        ("<ANSWER>B</ANSWER>", "B"),
        ("<think>x</think><answer>3 - 5", "3 - 5"),  # truncated: after </think>, less the dangling tag
        ("<think>x</think>B</Answer>", "B"),
        ("<think>İzmir, İstanbul</think><answer>B</answer>", "B"),  # "İ".lower() is two characters
    ],
)
def test_answer_region(response, region):
    assert answer_region(response) == region


@pytest.mark.parametrize(
    "response, think, fmt",
    [
        ("<think>reason</think><answer>B</answer>", True, 1),
        ("  <think>\nreason\n</think>\n<answer>\nB\n</answer>\n", True, 1),
        ("<answer>B</answer>", True, 0),
        ("<think>reason</think> B", True, 0),
        ("prefix <think>r</think><answer>B</answer>", True, 0),
        ("<think>r</think><answer>B</answer> suffix", True, 0),
        ("<answer>B</answer>", False, 1),
        ("I say <answer>B</answer>", False, 1),
        ("B", False, 0),
    ],
)
def test_has_format(response, think, fmt):
    assert has_format(response, think) == fmt


@pytest.mark.parametrize(
    "a, b, iou",
    [
        ((0, 10), (0, 10), 1.0),
        ((0, 10), (5, 15), 5 / 15),
        ((0, 10), (10, 20), 0.0),
        ((0, 10), (20, 30), 0.0),
        ((2, 4), (0, 10), 0.2),
        ((-2, 12), (0, 10), 10 / 14),  # past both ends: not clamped
        ((10, 0), (0, 10), 0.0),  # reversed: overlaps nothing, as in every official formula
        ((6, 4), (0, 10), 0.0),
        ((3, 3), (0, 10), 0.0),  # a point: no length to share
        ((3, 3), (3, 3), 0.0),  # zero-length union: lmms-eval's iou gives 0 (Temporal-R1's divides by 0)
        (None, (0, 10), 0.0),
    ],
)
def test_temporal_iou(a, b, iou):
    assert temporal_iou(a, b) == pytest.approx(iou)
    assert temporal_iou(b, a) == pytest.approx(iou)
