"""MVBench (rlt_mvbench): accuracy, as MVBench defines it.

Reference: MVBench's own evaluation (OpenGVLab/Ask-Anything video_chat2/mvbench.ipynb, `check_ans`
and its loop): per subtask, right answers over all questions; overall, right answers over all
questions of all subtasks (the group's size-weighted mean). The option is the reward's parser's
(`reward_plugins.score`, the same accuracy training is rewarded with). An answer it does not
understand is wrong and stays in the denominator; lmms-eval 0.7.3's built-in task
(tasks/mvbench/utils.py `mvbench_aggregate_results`) leaves empty answers out of it and reads the
article "a" as option A.
"""

from datasets import Dataset

from lmms_tasks.task import score_doc, shared_metrics
from openrlhf_video.data.records import validate_record


def process_results(doc, results):
    scored = score_doc(doc, results)
    return {"accuracy": 100.0 * scored.get("accuracy", 0.0), **shared_metrics(doc, scored)}


def _letter(answer, candidates):
    # MVBench gives the answer as the option's text; an answer that is none of them stays text,
    # so validate_record names the row.
    return chr(ord("A") + candidates.index(answer)) if answer in candidates else answer


def hub_records(dataset):
    """OpenGVLab/MVBench rows (video, question, candidates, answer as text, optional start/end)."""
    return Dataset.from_list([
        validate_record({
            "id": f"mvbench/{row['video']}#{i}", "task": "mcq", "video": row["video"], "question": row["question"],
            "options": row["candidates"], "answer": _letter(row["answer"], row["candidates"]),
            "clip": [row["start"], row["end"]] if row.get("start") is not None else None, "source": "mvbench",
        }, f"OpenGVLab/MVBench row {i}")
        for i, row in enumerate(dataset)
    ])  # fmt: skip
