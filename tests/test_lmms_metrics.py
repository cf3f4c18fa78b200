"""The rlt_ task metrics against hand-computed values, per doc (lmms-eval's process_results)."""

import pytest

from lmms_tasks.mvbench import utils as mvbench
from lmms_tasks.nextgqa import utils as nextgqa
from lmms_tasks.temporal_grounding import utils as grounding
from openrlhf_video.data import label_json
from reward_plugins import score


def record(task, **fields):
    doc = {"id": "t#0", "task": task, "video": "/videos/v.mp4", "question": "q", "options": None, "answer": None,
           "span": None, "duration": 20.0, "clip": None, "source": "test", "video_found": True}  # fmt: skip
    return {**doc, **fields}


TVG = record("tvg", span=[2.0, 6.0])
MCQ = record("mcq", options=["red", "green", "blue", "yellow"], answer="A")
GQA = record("gqa", options=["red", "green", "blue", "yellow"], answer="B", span=[2.0, 6.0])


# {"start_time": 3, "end_time": 7} against TVG's truth, in the R1 format
SPAN_3_7 = {
    "mIoU": 60.0,
    "R@0.3": 100.0,
    "R@0.5": 100.0,
    "R@0.7": 0.0,
    "parse_fail": 0.0,
    "format": 100.0,
    "missing_videos": 0,
}


def test_grounding_metrics_by_hand():
    # [3, 7] against [2, 6]: intersection 3 s, union 5 s -> IoU 0.6.
    got = grounding.process_results(TVG, ['<think>...</think><answer>{"start_time": 3, "end_time": 7}</answer>'])
    assert got == pytest.approx(SPAN_3_7)
    # "between 2.5s and 7s" and "[a, b]" parse to nothing in lmms-eval's built-in tasks; here IoU 3.5/5.
    assert grounding.process_results(TVG, ["<answer>between 2.5s and 7s</answer>"])["mIoU"] == pytest.approx(70.0)
    assert grounding.process_results(TVG, ["<answer>[2.0, 6.0]</answer>"])["R@0.7"] == 100.0


def test_unparseable_and_missing_video_are_misses_in_the_denominator():
    unparsed = grounding.process_results(TVG, ["<think>hmm</think><answer>soon</answer>"])
    assert unparsed == {
        "mIoU": 0.0,
        "R@0.3": 0.0,
        "R@0.5": 0.0,
        "R@0.7": 0.0,
        "parse_fail": 100.0,
        "format": 100.0,
        "missing_videos": 0,
    }
    # A missing video: whatever the model said without it, the doc scores as an empty answer.
    missing = grounding.process_results({**TVG, "video_found": False}, ["<think>x</think><answer>2 to 6</answer>"])
    assert missing == {
        "mIoU": 0.0,
        "R@0.3": 0.0,
        "R@0.5": 0.0,
        "R@0.7": 0.0,
        "parse_fail": 100.0,
        "format": 0.0,
        "missing_videos": 1,
    }


def test_mvbench_article_is_not_option_a_and_empty_is_wrong():
    # lmms-eval's built-in mcq_acc reads the "a" of "a blue square" as option A (the gold here).
    assert mvbench.process_results(MCQ, ["<think>x</think><answer>a blue square</answer>"])["accuracy"] == 0.0
    assert mvbench.process_results(MCQ, ["<think>x</think><answer>(A) red</answer>"]) == {
        "accuracy": 100.0, "parse_fail": 0.0, "format": 100.0, "missing_videos": 0}  # fmt: skip
    empty = mvbench.process_results(MCQ, [""])
    assert empty == {"accuracy": 0.0, "parse_fail": 100.0, "format": 0.0, "missing_videos": 0}


def test_nextgqa_metrics_by_hand():
    # Predicted [4, 8] against [2, 6]: intersection 2 s, union 6 s, prediction 4 s.
    got = nextgqa.process_results(
        GQA, ['<think>x</think><answer>{"choice": "B", "start_time": 4, "end_time": 8}</answer>']
    )
    assert got == pytest.approx({
        "Acc@QA": 100.0, "Acc@GQA": 100.0, "mIoP": 50.0, "IoP@0.3": 100.0, "IoP@0.5": 100.0,
        "mIoU": 100 / 3, "IoU@0.3": 100.0, "IoU@0.5": 0.0, "parse_fail": 0.0, "format": 100.0, "missing_videos": 0,
    })  # fmt: skip
    # Right option, grounded outside the truth: answered but not grounded.
    wrong_place = nextgqa.process_results(GQA, ['<answer>{"choice": "B", "start_time": 10, "end_time": 12}</answer>'])
    assert (wrong_place["Acc@QA"], wrong_place["Acc@GQA"], wrong_place["mIoP"]) == (100.0, 0.0, 0.0)
    # An answer without a span is half understood: a parse failure.
    assert nextgqa.process_results(GQA, ["<answer>B</answer>"])["parse_fail"] == 100.0


def test_nextgqa_several_segments_score_by_the_best_one():
    # Truth segments [2, 4] and [8, 10] (span [2, 10]); prediction [8, 10]: NExT-GQA's IoU and IoP
    # are 1 (best segment), and so is the reward's IoU (the label carries the segments).
    doc = dict(GQA, span=[2.0, 10.0], segments=[[2.0, 4.0], [8.0, 10.0]])
    response = '<answer>{"choice": "B", "start_time": 8, "end_time": 10}</answer>'
    got = nextgqa.process_results(doc, [response])
    assert got["mIoU"] == 100.0 and got["mIoP"] == 100.0 and got["Acc@GQA"] == 100.0
    assert score(response, label_json(doc), think=False)["iou"] == 1.0
    # A short span inside one segment: IoP 1 (grounded), IoU 0.5 / 2 s.
    got = nextgqa.process_results(doc, ['<answer>{"choice": "B", "start_time": 3, "end_time": 3.5}</answer>'])
    assert (got["mIoP"], got["mIoU"], got["Acc@GQA"]) == pytest.approx((100.0, 25.0, 100.0))


def test_nextgqa_with_a_clip_scores_on_the_clip_axis_like_the_reward():
    # Truth [12, 16] in a clip [10, 20]: the model sees the clip from 0 s, so "2 to 6" is exact.
    doc = dict(GQA, span=[12.0, 16.0], segments=[[12.0, 16.0]], clip=[10.0, 20.0], duration=30.0)
    response = '<answer>{"choice": "B", "start_time": 2, "end_time": 6}</answer>'
    got = nextgqa.process_results(doc, [response])
    assert got["mIoU"] == 100.0 and got["Acc@GQA"] == 100.0
    assert score(response, label_json(doc), think=False)["iou"] == 1.0


def test_intersection_over_prediction():
    assert nextgqa.intersection_over_prediction((4.0, 8.0), (2.0, 6.0)) == 0.5
    assert nextgqa.intersection_over_prediction((3.0, 5.0), (2.0, 6.0)) == 1.0
    assert nextgqa.intersection_over_prediction((7.0, 9.0), (2.0, 6.0)) == 0.0
    # NExT-GQA's rule for a point prediction: 1 inside the truth, else 0.
    assert nextgqa.intersection_over_prediction((3.0, 3.0), (2.0, 6.0)) == 1.0
    assert nextgqa.intersection_over_prediction((6.5, 6.5), (2.0, 6.0)) == 0.0
    assert nextgqa.intersection_over_prediction((6.0, 6.0), (2.0, 6.0)) == 1.0  # bounds included
    assert nextgqa.intersection_over_prediction((5.0, 3.0), (2.0, 6.0)) == 0.0  # reversed
    assert nextgqa.intersection_over_prediction(None, (2.0, 6.0)) == 0.0


def test_think_mode_changes_format_only(monkeypatch):
    answer_only = ["<answer>3 to 7</answer>"]
    assert grounding.process_results(TVG, answer_only)["format"] == 0.0  # think mode needs <think>
    monkeypatch.setenv("OPENRLHF_VIDEO_THINK", "0")
    assert grounding.process_results(TVG, answer_only) == pytest.approx(SPAN_3_7)


@pytest.mark.parametrize(
    "response",
    [
        '<think>a</think><answer>{"start_time": "1:02", "end_time": 70.5}</answer>',
        "from 0 to 19 seconds",
        "nothing",
        "</think>4-5",
    ],
)
def test_metric_iou_is_the_reward_iou(response):
    label = {key: TVG[key] for key in ("task", "answer", "options", "span", "duration")}
    assert grounding.process_results(TVG, [response])["mIoU"] == pytest.approx(100 * score(response, label)["iou"])


def test_hub_rows_become_records():
    """Rows shaped like the hub datasets lmms-eval's own tasks read (field names from their utils)."""
    from datasets import Dataset

    charades = grounding.charades_hub_records(
        Dataset.from_list([{"video": "3MSZA.mp4", "caption": "person opens the door", "timestamp": "[24.3, 30.4]"}])
    )
    assert charades[0] | {"id": None} == {"id": None, "task": "tvg", "video": "3MSZA.mp4", "question": "person opens the door",
        "options": None, "answer": None, "span": [24.3, 30.4], "duration": None, "clip": None, "source": "charades_sta"}  # fmt: skip
    timelens = grounding.activitynet_hub_records(
        Dataset.from_list([{"video_path": "v_x.mp4", "query": "q", "span": [[1.0, 2.5]], "duration": 9.0}])
    )
    assert (timelens[0]["span"], timelens[0]["duration"]) == ([1.0, 2.5], 9.0)
    rows = [
        {"video": "a.mp4", "question": "q", "candidates": ["up", "down"], "answer": "down", "start": 1.0, "end": 3.0}
    ]
    mcq = mvbench.hub_records(Dataset.from_list(rows))[0]
    assert (mcq["task"], mcq["options"], mcq["answer"], mcq["clip"]) == ("mcq", ["up", "down"], "B", [1.0, 3.0])


@pytest.mark.parametrize("think", ["1", "0"])
def test_eval_prompt_is_the_training_prompt(tiny_model_dir, monkeypatch, think):
    """lmms-eval's chat rendering of a doc equals the prompt training renders for that record."""
    from lmms_eval.protocol import ChatMessages
    from transformers import AutoProcessor

    from lmms_tasks.task import doc_to_messages
    from openrlhf_video.data import render_prompt

    monkeypatch.setenv("OPENRLHF_VIDEO_THINK", think)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    for doc in (TVG, MCQ, GQA):
        hf_messages = ChatMessages(messages=doc_to_messages(doc)).to_hf_messages()
        seen = processor.apply_chat_template(hf_messages, tokenize=False, add_generation_prompt=True)
        assert seen == render_prompt(processor, doc, think=think == "1")
        assert seen.count("<|video_pad|>") == 1
    without_video = ChatMessages(messages=doc_to_messages({**TVG, "video_found": False})).to_hf_messages()
    assert "<|video_pad|>" not in processor.apply_chat_template(without_video, tokenize=False)
