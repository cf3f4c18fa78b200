"""MVBench (rlt_mvbench): accuracy from the reward's option parser.

An answer the parser does not understand is wrong and stays in the denominator (lmms-eval's
built-in task drops empty answers from it, and reads the article "a" as option A).
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
