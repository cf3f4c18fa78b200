"""What every rlt_ task shares: where its records come from, the chat the model sees, the scoring.

A doc is a record (shared/DESIGN.md), whatever the source: local annotation files read by
openrlhf_video.data's converters when `<ENV>_ANNOTATIONS` is set, else the hub dataset that
lmms-eval's own task uses (its rows mapped to records by the task's `process_docs`). The prompt is
the training prompt and each metric is computed from `reward_plugins.score`, so an eval number and
a training reward cannot disagree.

Environment (ENV is the task's `metadata.env`, e.g. RLT_CHARADES_STA):
  <ENV>_ANNOTATIONS  annotation file in any format the converters read, or a data config YAML
  <ENV>_FORMAT       its format (default: records for .jsonl, else the task's native format)
  <ENV>_VIDEO_ROOT   where relative video paths start (default: the annotation file's folder;
                     with hub data: lmms-eval's video cache; a data config names its own roots)
and, as for the training reward, OPENRLHF_VIDEO_THINK=0 for answer-only mode (default: think;
read at each call, not at import: one process may evaluate both modes).
"""

import json
import os

from datasets import Dataset, DatasetDict
from lmms_eval.api.task import ConfigurableMessagesTask
from lmms_eval.utils import resolve_cache_dir
from loguru import logger as eval_logger
from tenacity import RetryError

from lmms_tasks import local_records
from openrlhf_video.data import build_messages, label_json
from reward_plugins import score
from reward_plugins.protocol import think_from_env


class RltTask(ConfigurableMessagesTask):
    """lmms-eval's task, loading local records when `<ENV>_ANNOTATIONS` says so.

    lmms-eval's YAML cannot read environment variables and its loader downloads before any hook
    runs, so the choice between local files and the hub is made here, in `download`. YAML names
    it with `class:`; lmms-eval builds such classes alike for every model, so this is the chat
    flavour (system prompt + video + question), which chat backends (qwen2_5_vl, vllm, openai)
    and `dummy` accept; `--force_simple` backends are not supported.
    """

    def __init__(self, config):
        # lmms-eval hands over the whole YAML, `class` included, which TaskConfig rejects.
        super().__init__(config={key: value for key, value in config.items() if key != "class"})

    def download(self, dataset_kwargs=None) -> None:
        meta, name = self.config.metadata, self.config.task
        env = meta["env"]
        annotations = os.environ.get(f"{env}_ANNOTATIONS")
        video_root = os.environ.get(f"{env}_VIDEO_ROOT")
        wanted = f"{meta['record_task']} records"
        if annotations:
            records = local_records(annotations, os.environ.get(f"{env}_FORMAT"), meta["format"], video_root)
            if self.config.dataset_name:  # a hub subset (MVBench subtask): the converter names it in `source`
                wanted += f" with source {meta['format']}/{self.config.dataset_name}"
                records = [r for r in records if r["source"] == f"{meta['format']}/{self.config.dataset_name}"]
        elif self.config.dataset_path is None:
            raise ValueError(
                f"{name}: lmms-eval has no hub dataset for it; set {env}_ANNOTATIONS (and {env}_VIDEO_ROOT)"
            )
        else:
            hf_home = os.path.expanduser(os.getenv("HF_HOME", "~/.cache/huggingface"))
            hub_videos = os.path.join(
                resolve_cache_dir(dataset_kwargs["cache_dir"], base_dir=hf_home), meta.get("hub_video_dir", "")
            )
            try:  # lmms-eval's own download, retried a few times; process_docs makes records
                super().download(dataset_kwargs)
            except Exception as e:  # offline clusters end here: say how to use local files instead
                e = e.last_attempt.exception() if isinstance(e, RetryError) else e
                raise ValueError(f"{name}: cannot load the hub dataset {self.config.dataset_path} ({type(e).__name__}: {e}); "
                                 f"to evaluate local data, set {env}_ANNOTATIONS (and {env}_VIDEO_ROOT)") from e  # fmt: skip
            records = [dict(r) for r in self.dataset[self.config.test_split]]
            for r in records:
                r["video"] = os.path.join(video_root or hub_videos, r["video"])
        records = [r for r in records if r["task"] == meta["record_task"]]
        if not records:
            raise ValueError(f"{name}: no {wanted} in {annotations or self.config.dataset_path}")
        for r in records:
            r["video_found"] = os.path.isfile(r["video"])
        missing = [r["video"] for r in records if not r["video_found"]]
        if missing:
            eval_logger.warning(
                f"{name}: {len(missing)} of {len(records)} videos missing (scored as empty answers, "
                f"counted in missing_videos), e.g. {missing[:3]}"
            )
        self.dataset = DatasetDict({self.config.test_split: Dataset.from_list(records)})
        self.dataset_no_image = self.dataset


def doc_to_visual(doc) -> list:
    return [doc["video"]] if doc["video_found"] else []


def doc_to_messages(doc) -> list[dict]:
    """The training prompt (openrlhf_video.data.build_messages) in lmms-eval's message layout;
    a missing video is left out and an MVBench clip is passed as start/end times."""
    system, user = build_messages(doc, think=think_from_env())
    content = [{"type": "text", "text": part["text"]} for part in user["content"] if part["type"] == "text"]
    if doc["video_found"]:
        start, end = doc["clip"] or (None, None)
        content.insert(0, {"type": "video", "url": doc["video"], "start_time": start, "end_time": end})
    return [
        {"role": "system", "content": [{"type": "text", "text": system["content"]}]},
        {"role": "user", "content": content},
    ]


def doc_to_text(doc) -> str:
    return doc_to_messages(doc)[1]["content"][-1]["text"]


def doc_to_target(doc) -> str:
    return json.dumps({key: doc[key] for key in ("answer", "span") if doc[key] is not None})


def score_doc(doc, results) -> dict:
    """`reward_plugins.score` of the doc's response. A doc whose video is missing counts as an
    empty answer: a miss in every metric, so every query stays in every denominator."""
    response = results[0] if doc["video_found"] else ""
    return score(response, label_json(doc), think=think_from_env())


def shared_metrics(doc, scored) -> dict:
    """The metrics every task reports besides its own: answers not understood (any part of a
    grounded answer missing), answers in the R1 format, docs whose video is missing."""
    parsed = scored["parsed"]
    understood = parsed is not None and not (isinstance(parsed, dict) and None in parsed.values())
    return {
        "parse_fail": 100.0 * (not understood),
        "format": 100.0 * scored["format"],
        "missing_videos": int(not doc["video_found"]),
    }
