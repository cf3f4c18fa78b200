"""verl's own reward path (verl 0.9.1, in .venv-verl: cpu_env/verl_env.sh) scores a batch with
`reward_plugins.adapters.compute_score`, configured by examples/verl_grpo.yaml, and the scores
and the per-component extras it stacks are `score()`'s.

The batch is built by examples/verl_data.py (parquet, label as `reward_model.ground_truth`) and
run through verl's dataset, Ray reward loop and reward extraction by tests/verl_reward_loop.py;
see there for what runs. verl itself cannot share .venv (it pins transformers<5.11; OpenRLHF
0.11.2 pins 5.15.0), so it runs in a subprocess and this test compares its JSON with `score()`.
"""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from reward_plugins import record_label, score
from reward_plugins.scoring import COMPONENTS

REPO = Path(__file__).resolve().parents[1]
VERL_PYTHON = REPO / ".venv-verl" / "bin" / "python"
ROLLOUT_N = 2

# (record, think, the two responses a rollout gave). think None: the row's extra_info has no
# `think` (a user's own parquet); parquet then gives that row think=None, which means the default.
CASES = [
    ({"id": "charades/3MSZA#0", "task": "tvg", "video": "3MSZA.mp4", "question": "person opens the door",
      "options": None, "answer": None, "span": [12.0, 17.0], "duration": 30.0, "clip": [10.0, 20.0],
      "source": "charades_sta"}, True,
     ['<think>the door opens early</think><answer>{"start_time": 2.0, "end_time": 7.0}</answer>',
      "<think>t</think><answer>12 - 17</answer>"]),  # clip axis: IoU 1, then the video's axis: IoU 0
    ({"id": "activitynet/v_1#2", "task": "tvg", "video": "v_1.mp4", "question": "a man jumps",
      "options": None, "answer": None, "span": [3.0, 9.0], "duration": 20.0, "clip": None,
      "source": "activitynet"}, False,
     ["<answer>3 to 9</answer>", "<think>x</think><answer>4 - 9</answer>"]),
    ({"id": "mvbench/7#0", "task": "mcq", "video": "7.mp4", "question": "What colour is the square?",
      "options": ["red", "green", "blue"], "answer": "B", "span": None, "duration": 10.0, "clip": None,
      "source": "mvbench"}, True,
     ["<think>green</think><answer>B</answer>", "<think>red</think><answer>(A) red</answer>"]),
    ({"id": "nextgqa/12#3", "task": "gqa", "video": "12.mp4", "question": "Why does the man wave?",
      "options": ["to stop a car", "to greet a friend"], "answer": "B", "span": [2.0, 7.0], "duration": 20.0,
      "clip": None, "source": "nextgqa"}, None,
     ['<think>w</think><answer>{"choice": "B", "start_time": 2, "end_time": 6}</answer>',
      "<answer>A, 2 - 7</answer>"]),  # no think part: format 0 in the default (think) mode
    ({"id": "synthetic/4#1", "task": "oeqa", "video": "4.mp4", "question": "What colour is the square?",
      "options": None, "answer": "green", "span": None, "duration": 10.0, "clip": None, "source": "synthetic"},
     True, ["<think>c</think><answer>Green.</answer>", "green"]),
]  # fmt: skip


def _example_data():
    spec = importlib.util.spec_from_file_location("verl_data_example", REPO / "examples" / "verl_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parquet(path: Path, *, ground_truth_as_dict: bool) -> str:
    example = _example_data()
    rows = []
    for index, (record, think, _) in enumerate(CASES):
        row = example.verl_row(record, index=index, think=think is not False, video=False)
        if think is None:
            del row["extra_info"]["think"]
        if ground_truth_as_dict:  # a parquet struct, as a dataset written with dicts has it
            row["reward_model"]["ground_truth"] = json.loads(row["reward_model"]["ground_truth"])
        rows.append(row)
    return example.write_parquet(rows, str(path))


def test_verl_reward_loop_stacks_the_scores_and_components_of_score(tmp_path, tiny_model_dir, pins):
    assert VERL_PYTHON.exists(), f"{VERL_PYTHON} is missing: run `bash cpu_env/setup.sh`"
    responses = [response for _, _, pair in CASES for response in pair]  # rollout.n = 2, interleaved
    spec = {
        "config_dir": str(REPO / "examples"),
        "config_name": "verl_grpo",
        "example_overrides": [f"actor_rollout_ref.model.path={tiny_model_dir}"],
        "overrides": [
            f"actor_rollout_ref.rollout.n={ROLLOUT_N}",
            "reward.num_workers=2",  # the batch is split between two Ray workers and stacked again
            "data.filter_overlong_prompts=False",
        ],
        "adapters_file": str(REPO / "reward_plugins" / "adapters.py"),
        "batches": [
            {"parquet": _parquet(tmp_path / "json.parquet", ground_truth_as_dict=False), "responses": responses},
            {"parquet": _parquet(tmp_path / "dict.parquet", ground_truth_as_dict=True), "responses": responses},
        ],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ)  # PYTHONPATH has this checkout: verl's Ray workers import reward_plugins from it
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # .venv-verl has no bytecode until a first run writes it
    env["RAY_DEDUP_LOGS"] = "0"
    run = subprocess.run(
        [str(VERL_PYTHON), str(REPO / "tests" / "verl_reward_loop.py"), str(tmp_path / "spec.json"), str(tmp_path / "out.json")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-6000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["example_reward"] == {"path": "pkg://reward_plugins.adapters", "name": "compute_score"}
    assert (
        out["versions"]["verl"] == pins("openrlhf-video", "recipes")["verl"]
    )  # the release setup.py's [recipes] names

    expected = [
        score(response, record_label(record), think=think is not False)
        for record, think, pair in CASES
        for response in pair
    ]
    rewards = [result["reward"] for result in expected]
    assert len(set(rewards)) >= 4, rewards  # the batch tells labels, tasks and formats apart
    sources = [record["source"] for record, _, pair in CASES for _ in pair]
    for batch in out["batches"]:
        assert batch["data_sources"] == sources  # rows in order: the comparison is row by row
        assert batch["scores"] == pytest.approx(rewards)
        assert batch["extra_keys"] == ["score", *COMPONENTS]
        assert batch["extras"]["score"] == pytest.approx(rewards)
        for name in COMPONENTS:  # a component the task lacks is stacked as 0.0
            assert batch["extras"][name] == pytest.approx([float(result.get(name, 0.0)) for result in expected]), name
        # The same function named by its file path, through verl's loader and naive reward manager.
        assert batch["file_path"]["scores"] == pytest.approx(rewards)
        assert batch["file_path"]["extras"] == [
            {"score": result["reward"], **{name: float(result.get(name, 0.0)) for name in COMPONENTS}}
            for result in expected
        ]


def test_compute_score_reads_think_none_as_the_default():
    """What the parquet above hands the adapter for a row without `think` (it failed before: None
    selected the no-think format)."""
    from reward_plugins.adapters import compute_score

    label = record_label(CASES[3][0])
    response = CASES[3][2][1]  # an answer with no think part
    assert compute_score("nextgqa", response, label, extra_info={"index": 3, "think": None})["format"] == 0.0
    assert compute_score("nextgqa", response, label, extra_info={"index": 3, "think": False})["format"] == 1.0
