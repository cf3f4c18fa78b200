"""`score` per task, presets and weights, the adapters for verl and TRL, and property tests that
no string or label makes any reward raise or return a non-finite value."""

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_plugins import PRESETS, score, scoring
from reward_plugins.adapters import compute_score, trl_reward_func
from reward_plugins.protocol import parse_weights, response_from_query, score_batch

TVG = {"task": "tvg", "span": [3.0, 5.0], "duration": 30.0, "answer": None, "options": None}
MCQ = {"task": "mcq", "answer": "B", "options": ["a dog runs", "the cat sleeps", "a car", "rain"], "span": None}
OEQA = {"task": "oeqa", "answer": "The red car", "options": None}
GQA = {"task": "gqa", "answer": "the cat sleeps", "options": ["a dog runs", "the cat sleeps"], "span": [3, 6]}


def test_tvg_temporal_r1_preset_is_half_iou_half_format():
    assert PRESETS["tvg"] == {"iou": 0.5, "format": 0.5}
    out = score('<think>t</think><answer>{"start_time": "3.0", "end_time": "6.0"}</answer>', TVG)
    assert out["format"] == 1 and out["parsed"] == (3.0, 6.0)
    assert out["iou"] == pytest.approx(2 / 3)
    assert out["reward"] == pytest.approx(0.5 * 2 / 3 + 0.5)


def test_iou_is_computed_even_when_the_format_is_wrong():
    out = score("The door opens from 3 to 5 seconds.", TVG)
    assert out["format"] == 0 and out["iou"] == 1.0 and out["reward"] == 0.5


def test_tvg_span_is_scored_as_stated_neither_clamped_nor_reordered():
    # Past the video's end: the official IoU is taken on the span as stated, [25, 99] vs [25, 30].
    out = score("<answer>[25, 99]</answer>", {**TVG, "span": [25, 30]}, think=False)
    assert out["parsed"] == (25.0, 99.0) and out["iou"] == pytest.approx(5 / 74)
    # Reversed: IoU 0 (the metric checks the order, so the reward teaches it), format still counts.
    out = score('<think>t</think><answer>{"start_time": 5, "end_time": 3}</answer>', TVG)
    assert out["parsed"] == (5.0, 3.0) and out["iou"] == 0.0 and out["reward"] == 0.5


def test_a_true_span_is_used_as_annotated():
    # NExT-GQA's test split has segments starting at -0.2 s: data, not an error, and not moved.
    label = {**TVG, "span": [-0.2, 4.0]}
    assert score("<answer>-0.2 - 4</answer>", label, think=False)["iou"] == 1.0
    assert score("<answer>0 - 4</answer>", label, think=False)["iou"] == pytest.approx(4 / 4.2)


def test_several_true_segments_score_by_the_best_one():
    # NExT-GQA's rule (eval_ground): the IoU is the best over the question's segments.
    label = {**GQA, "span": [2, 10], "segments": [[2, 4], [8, 10]]}
    out = score('<answer>{"choice": "B", "start_time": 8, "end_time": 10}</answer>', label, think=False)
    assert out["iou"] == 1.0 and out["accuracy"] == 1.0


@pytest.mark.parametrize(
    "response, accuracy",
    [
        ("<think>t</think><answer>B</answer>", 1.0),
        ("<think>t</think><answer>the cat sleeps</answer>", 1.0),
        ("<think>t</think><answer>(C)</answer>", 0.0),
        ("<think>t</think><answer>a cat</answer>", 0.0),
    ],
)
def test_mcq_accuracy(response, accuracy):
    out = score(response, MCQ)
    assert out["accuracy"] == accuracy and out["reward"] == pytest.approx(0.5 * accuracy + 0.5)


def test_mcq_label_answer_may_be_the_option_text():
    assert score("<answer>B</answer>", {**MCQ, "answer": "the cat sleeps"}, think=False)["accuracy"] == 1.0


def test_oeqa_compares_normalised_text():
    out = score("<think>t</think><answer>Red car.</answer>", OEQA)
    assert out["parsed"] == "red car" and out["accuracy"] == 1.0
    assert score("<answer>blue car</answer>", OEQA, think=False)["accuracy"] == 0.0


def test_gqa_scores_answer_and_span():
    out = score('<think>t</think><answer>{"answer": "B", "start_time": 3, "end_time": 5}</answer>', GQA)
    assert out["parsed"] == {"choice": "B", "span": (3.0, 5.0)}
    assert out["accuracy"] == 1.0 and out["iou"] == pytest.approx(2 / 3)
    assert out["reward"] == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.5)
    assert score("<answer>A, 10 - 12</answer>", GQA, think=False)["reward"] == pytest.approx(0.5)


def test_no_think_mode_needs_only_an_answer_block():
    assert score("<answer>B</answer>", MCQ, think=False)["format"] == 1
    assert score("<answer>B</answer>", MCQ, think=True)["format"] == 0


def test_weights_override_the_preset():
    out = score("<answer>3 - 5</answer>", TVG, iou=1.0, format=0.0, accuracy=7.0)  # accuracy: not a tvg part
    assert out["reward"] == 1.0
    for bad in ({"precision": 1.0}, {"iou": 1e308, "format": 1e308}):  # the second: an infinite reward
        with pytest.raises(TypeError, match="weights"):
            score("x", TVG, **bad)


def test_nothing_understood_gives_parsed_none():
    assert score("<think>t</think><answer>no idea</answer>", TVG)["parsed"] is None
    assert score("<answer>no idea</answer>", MCQ)["parsed"] is None


@pytest.mark.parametrize(
    "label, field",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ({"task": "caption"}, "'task'"),
        ({"task": "tvg", "span": [1]}, "'span'"),
        ({"task": "tvg", "span": [0, float("nan")]}, "'span'"),
        ({"task": "tvg", "span": [5, 3]}, "'span'"),  # a reversed truth is bad data, never reordered
        ({"task": "tvg", "span": [3, 5], "segments": [[1, 2], [4, 4]]}, "'segments'"),
        ({"task": "tvg", "span": [3, 5], "segments": []}, "'segments'"),
        ({"task": "mcq", "answer": ""}, "'answer'"),
        ({"task": "mcq", "answer": "zebra", "options": ["a", "b"]}, "'answer'"),
        ({"task": "mcq", "answer": "A", "options": "A,B"}, "'options'"),
        ({"task": "tvg", "span": [1, 2], "duration": -3}, "'duration'"),
        ({"task": "oeqa", "answer": "A"}, "'answer'"),  # "a" is an article: nothing left to match
        ({"task": "gqa", "answer": "red car", "span": [3, 5]}, "'options'"),  # as a gqa record needs them
        ("[" * 100_000, "not JSON"),  # json.loads raises RecursionError
        ('{"task": "tvg", "span": [0, 1' + "0" * 400 + "]}", "'span'"),  # math.isfinite raises OverflowError
    ],
)
def test_bad_labels_score_zero_with_a_message_naming_the_field(label, field, caplog, monkeypatch):
    monkeypatch.setattr(scoring, "_unusable_labels", itertools.count(1))  # this one is logged
    out = score("<think>t</think><answer>A 1 - 2</answer>", label)
    assert out["reward"] == 0.0 and out["parsed"] is None
    assert field in out["error"] and field in caplog.text


def test_unusable_labels_are_counted_not_logged_one_line_each(caplog, monkeypatch):
    """A run whose labels are all broken scored 50,048 samples into 50,048 warning lines."""
    monkeypatch.setattr(scoring, "_unusable_labels", itertools.count(1))
    for _ in range(2500):
        assert score("<answer>A</answer>", {"task": "caption"})["reward"] == 0.0
    counts = [record.args[0] for record in caplog.records if "unusable label" in record.getMessage()]
    assert counts == [1, 2, 3, 4, 5, 1000, 2000]


def test_labels_may_be_json_text():
    assert score("<answer>B</answer>", json.dumps(MCQ), think=False)["reward"] == 1.0


# ---------- never raise, never non-finite ----------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
labels = st.one_of(
    json_values,
    st.text(max_size=50),
    st.fixed_dictionaries(
        {"task": st.sampled_from(["tvg", "mcq", "oeqa", "gqa", "x"]) | json_values},
        optional={
            "answer": json_values | st.sampled_from(["A", "b", "(C)", "the cat"]),
            "options": json_values | st.lists(st.text(max_size=15), max_size=6),
            "span": json_values | st.lists(st.floats(), min_size=2, max_size=2),
            "segments": json_values | st.lists(st.lists(st.floats(), min_size=2, max_size=2), max_size=3),
            "duration": json_values,
        },
    ),
)
# Responses built from the pieces parsers look for, so hypothesis reaches deep branches.
pieces = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "answer is",
        "(",
        ")",
        ":",
        " - ",
        " to ",
        "and",
        "start_time",
        '"end_time": "',
        "1:",
        "00:",
        ".",
        "9" * 30,
        "-",
        "A",
        "b",
        " ",
        "\n",
        "seconds",
        "<|im_end|>",
        "<|im_start|>assistant",
    ]
)
responses = st.one_of(st.text(max_size=200), st.lists(pieces | st.text(max_size=5), max_size=30).map("".join))


@settings(max_examples=600, deadline=None)
@given(response=responses, label=labels, think=st.booleans())
def test_score_never_raises_and_stays_finite(response, label, think):
    out = score(response, label, think=think)
    assert math.isfinite(out["reward"]) and out["format"] in (0, 1)
    for name in ("iou", "accuracy"):
        assert 0.0 <= out.get(name, 0.0) <= 1.0
    assert 0.0 <= out["reward"] <= 1.0  # presets sum to 1


@settings(max_examples=300, deadline=None)
@given(query=responses, prompt=st.none() | responses, label=labels)
def test_batch_and_adapters_never_raise(query, prompt, label):
    out = score_batch([query], [prompt], [label])
    assert all(math.isfinite(v) for v in out["rewards"] + out["scores"])
    assert all(math.isfinite(v[0]) for v in out["extra_logs"].values())
    assert math.isfinite(compute_score("src", query, label)["score"])
    assert math.isfinite(trl_reward_func(prompts=[prompt], completions=[query], label=[label])[0])


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), options=st.none() | st.lists(st.text(max_size=20), max_size=6))
def test_parsers_never_raise(text, options):
    from reward_plugins import parse_choice, parse_span

    span = parse_span(text)
    assert span is None or all(math.isfinite(t) for t in span)
    letter = parse_choice(text, options)
    assert letter is None or (len(letter) == 1 and letter.isupper())


# ---------- protocol pieces ----------

PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|video_pad|><|vision_end|>When does the door open?<|im_end|>\n<|im_start|>assistant\n"
)


def decoded(response, pads=300):
    """What OpenRLHF hands the reward: the decoded sequence with the video pad run expanded."""
    return PROMPT.replace("<|video_pad|>", "<|video_pad|>" * pads) + response + "<|im_end|><|endoftext|>"


def test_response_is_cut_from_the_full_decoded_query():
    response = "<think>the door</think><answer>3 - 5</answer>"
    assert response_from_query(decoded(response), PROMPT) == response
    assert response_from_query(decoded(response)) == response
    # A few-shot prompt has two assistant turns; the reply follows the second, even when the
    # model itself writes a chat marker.
    few_shot = PROMPT + "0 - 1<|im_end|>\n<|im_start|>user\nAgain?<|im_end|>\n<|im_start|>assistant\n"
    query = few_shot + "3 - 5 <|im_start|>assistant 6 - 7<|im_end|>"
    assert response_from_query(query, few_shot) == "3 - 5 assistant 6 - 7"
    assert response_from_query("no template here: 3 - 5") == "no template here: 3 - 5"
    assert response_from_query("PROMPT 3 - 5", "PROMPT") == " 3 - 5"


def test_score_batch_logs_every_key_for_every_task():
    labels = [TVG, MCQ, "not a label"]
    queries = [decoded("<think>t</think><answer>3 - 5</answer>"), decoded("B"), decoded("x")]
    out = score_batch(queries, [PROMPT] * 3, labels)
    assert out["rewards"] == pytest.approx([1.0, 0.5, 0.0])
    assert out["scores"] == pytest.approx([1.0, 1.0, 0.0])  # content only: dynamic filtering uses it
    logs = out["extra_logs"]
    assert all(len(values) == 3 for values in logs.values())
    assert logs["format"] == [1.0, 0.0, 0.0] and logs["unscored"] == [0.0, 0.0, 1.0]
    assert logs["response_chars"][1] == 1.0


def test_parse_weights():
    assert parse_weights("iou=0.7, format=0.3") == {"iou": 0.7, "format": 0.3}
    assert parse_weights("") == {}
    for bad in ("iou", "precision=1", "iou=x", "iou=nan", "iou=1e308,format=1e308"):
        with pytest.raises(ValueError, match="reward weight"):
            parse_weights(bad)


# ---------- adapters, called with the argument shapes the frameworks use ----------


def test_verl_compute_score():
    # verl's reward managers call it with these keywords and stack every returned key per batch.
    out = compute_score(
        data_source="charades_sta",
        solution_str="<think>t</think><answer>3 - 5</answer>",
        ground_truth=json.dumps(TVG),
        extra_info={"index": 0, "split": "train"},
    )
    assert out == {"score": 1.0, "format": 1.0, "iou": 1.0, "accuracy": 0.0}
    out = compute_score("mvbench", "<answer>B</answer>", MCQ, extra_info={"think": False})
    assert out["score"] == 1.0 and set(out) == {"score", "format", "iou", "accuracy"}


def test_trl_reward_func_standard_and_conversational():
    completions = ["<think>t</think><answer>B</answer>", "<think>t</think><answer>A</answer>"]
    assert trl_reward_func(prompts=["p", "p"], completions=completions, label=[MCQ, json.dumps(MCQ)]) == [1.0, 0.5]
    conversational = [
        [{"role": "assistant", "content": "<think>t</think><answer>3 - 5</answer>"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "<think>t</think><answer>0 - 1</answer>"}]}],
    ]
    prompts = [[{"role": "user", "content": "When?"}]] * 2
    # No `label` column: the label is assembled from the record's own columns.
    columns = {name: [TVG[name]] * 2 for name in ("task", "span", "duration")}
    rewards = trl_reward_func(prompts, conversational, completion_ids=[[1], [2]], trainer_state=None, **columns)
    assert rewards == [1.0, 0.5]
    assert trl_reward_func(prompts[:1], ["<answer>3 - 5</answer>"], think=False, **columns) == [1.0]


def test_trl_record_columns_with_a_clip_score_on_the_clip_time_axis():
    """As in training (label_json): a clipped record's span is answered on the clip's time axis."""
    columns = {"task": ["tvg"] * 2, "span": [[12.0, 15.0]] * 2, "duration": [60.0] * 2, "clip": [[10.0, 40.0]] * 2}
    completions = ["<think>t</think><answer>2.0 - 5.0</answer>", "<think>t</think><answer>12.0 - 15.0</answer>"]
    assert trl_reward_func(["p", "p"], completions, **columns) == [1.0, 0.5]
    bad = {**columns, "clip": [[10.0], "x"]}  # never raises into the trainer
    assert trl_reward_func(["p", "p"], completions, **bad) == [0.0, 0.0]


def test_verl_compute_score_takes_the_reward_loops_extra_arguments():
    """verl's reward loop passes reward_router_address and reward_model_tokenizer when a reward
    model is configured (verl/experimental/reward_loop/reward_manager/naive.py)."""
    out = compute_score(
        "src", "<think>t</think><answer>3 - 5</answer>", TVG, reward_router_address="h:1", reward_model_tokenizer=None
    )
    assert out["score"] == 1.0


def test_the_package_imports_no_torch_or_numpy():
    """Pure Python, so the rewards install and run anywhere (the reward file alone needs torch)."""
    import subprocess
    import sys

    code = (
        "import sys, reward_plugins, reward_plugins.adapters, reward_plugins.server\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
