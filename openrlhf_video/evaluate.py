"""`openrlhf-video eval [lmms-eval args]`: lmms-eval with our `rlt_` tasks, failing when it fails.

Everything after `eval` goes to lmms-eval unchanged; we add `--include_path` (lmms-eval has no
entry point through which a package could offer tasks). lmms-eval exits 0 even when a task name
is unknown, a dataset cannot be loaded or the evaluation raises (it logs the error and carries
on), so success is judged from what it wrote: a results file from this run that holds every task
asked for, each with at least one scored sample.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import lmms_tasks
from openrlhf_video.data import DataError

# `--tasks list` and friends print and exit without results; they succeed when lmms-eval does.
LISTINGS = {"list", "list_groups", "list_tags", "list_subtasks"}
# lmms-eval's CLI with Qwen2.5-VL's positions as the model was trained (transformers 5's generate
# gives the text after a video others: docs/upstream/), and, for runs of our `rlt_` tasks only,
# without indexing lmms-eval's own tasks (patches.py).
# sys.argv[0] names the program in lmms-eval's own usage lines (else `usage: -c`).
LMMS_EVAL = ("import sys; sys.argv[0] = 'openrlhf-video eval'; "
             "from openrlhf_video import patches; patches.transformers_rope_index_as_trained(); {}"
             "from lmms_eval.__main__ import cli_evaluate; cli_evaluate()")  # fmt: skip
HELP = """usage: openrlhf-video eval [lmms-eval arguments]

lmms-eval with our tasks (--include_path is added; it cannot be given again). Exit 1 when a task
asked for wrote no results (lmms-eval itself exits 0 then), 2 when the arguments or annotations
are refused before lmms-eval starts. --config is refused: give --tasks and --output_path.

our tasks (metrics computed by the training reward's parser, see README):
{tasks}

local data, per task (without ANNOTATIONS: lmms-eval's hub dataset, where there is one):
  RLT_<TASK>_ANNOTATIONS  an annotation file in any format `openrlhf-video data` reads, or a data config
  RLT_<TASK>_VIDEO_ROOT   where its relative video paths start (default: the file's folder)
  RLT_<TASK>_FORMAT       its format (default: records for .jsonl, else the task's own)
  <TASK>: {envs}
  OPENRLHF_VIDEO_THINK=0  score answer-only models (no <think> block)

example:
  openrlhf-video eval --model qwen2_5_vl --model_args pretrained=CKPT,fps=2,min_pixels=3136,max_pixels=51744 \\
      --tasks rlt_video --output_path runs/eval

lmms-eval's own arguments follow.
"""


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        ours = our_tasks()
        tasks = "\n".join(f"  {name}" + (f" (group of {len(t['members'])})" if "members" in t else f" ({t['format']} data)")
                          for name, t in sorted(ours.items()) if not name.startswith("rlt_mvbench_"))  # fmt: skip
        envs = ", ".join(sorted({t["env"].removeprefix("RLT_") for t in ours.values() if "env" in t}))
        print(HELP.format(tasks=tasks, envs=envs), flush=True)
        return subprocess.call([sys.executable, "-c", LMMS_EVAL.format(""), "--help"])
    if any(arg == "--include_path" or arg.startswith("--include_path=") for arg in argv):
        print(
            "openrlhf-video eval: --include_path is set to our task folder already and lmms-eval "
            "takes only one; run `lmms-eval --include_path DIR` yourself to combine task folders",
            file=sys.stderr,
        )
        return 2
    if any(arg == "--config" or arg.startswith("--config=") for arg in argv):  # its tasks would go unchecked
        print("openrlhf-video eval: give --tasks and --output_path on the command line instead of --config, "
              "so that the results of every task can be checked", file=sys.stderr)  # fmt: skip
        return 2
    known = argparse.ArgumentParser(add_help=False)
    known.add_argument("--tasks")
    known.add_argument("--output_path")
    args, _ = known.parse_known_args(argv)
    # Mistakes found before lmms-eval starts and loads the model: it would log them and go on.
    requested = [name for name in (args.tasks or "").split(",") if name and "*" not in name]
    problems = task_problems(requested) if args.tasks not in (None, *LISTINGS) else []
    for problem in problems:
        print(f"openrlhf-video eval: {problem}", file=sys.stderr)
    if problems:
        return 2
    if args.output_path:
        try:
            Path(args.output_path).mkdir(parents=True, exist_ok=True)
            writable = os.access(args.output_path, os.W_OK)
        except OSError:
            writable = False
        if not writable:  # lmms-eval would evaluate, then only warn that it could not save
            print(f"openrlhf-video eval: --output_path {args.output_path} is not a writable directory", file=sys.stderr)
            return 2
    ours_only = args.tasks is not None and all(name.startswith("rlt_") for name in args.tasks.split(","))
    code = LMMS_EVAL.format("patches.lmms_eval_index_included_tasks_only(); " if ours_only else "")
    command = [sys.executable, "-c", code, *argv, "--include_path", str(lmms_tasks.TASKS_DIR)]
    if args.tasks is None or args.tasks in LISTINGS:
        return subprocess.call(command)

    with tempfile.TemporaryDirectory(prefix="openrlhf-video-eval-") as scratch:
        output = Path(args.output_path or scratch)
        if args.output_path is None:
            command += ["--output_path", scratch]
        started = time.time()
        code = subprocess.call(command)
        problems = [] if code == 0 else [f"lmms-eval exited with code {code}"]
        problems += check_results(output, args.tasks.split(","), since=started)
    for problem in problems:
        print(f"openrlhf-video eval: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def our_tasks() -> dict[str, dict]:
    """Our tasks and groups, read from their YAML files (lmms-eval's import is slow): a task's
    `metadata` (env, format) and whether it has a hub dataset; a group's member names."""

    class Loader(yaml.SafeLoader):  # lmms-eval's `!function` tags are not needed here
        pass

    Loader.add_multi_constructor("!", lambda *_: None)
    tasks = {}
    for path in lmms_tasks.TASKS_DIR.rglob("*.yaml"):
        config = yaml.load(path.read_text(), Loader)
        template = config.get("include") and yaml.load((path.parent / config["include"]).read_text(), Loader)
        if "group" in config:
            tasks[config["group"]] = {"members": config["task"]}
        else:
            hub = config.get("dataset_path") or (template or {}).get("dataset_path")
            tasks[config["task"]] = {**config["metadata"], "hub": bool(hub)}
    return tasks


def task_problems(requested: list[str]) -> list[str]:
    """What would make lmms-eval fail on these tasks, found in seconds: a task name neither ours
    nor lmms-eval's, and for each of ours the local annotations it would load (a variable set to
    a file that does not load names the file and line; a task without hub data needs one)."""
    ours = our_tasks()
    unknown = [name for name in requested if name.startswith("rlt_") and name not in ours]
    others = [name for name in requested if not name.startswith("rlt_")]
    if others:
        from lmms_eval.tasks import TaskManager
        from loguru import logger

        logger.disable("lmms_eval")  # its index logs a line per odd task YAML; lmms-eval itself runs in a subprocess
        unknown += [name for name in others if name not in TaskManager(include_defaults=True).all_tasks]
    if unknown:
        return [
            f"unknown task {', '.join(unknown)}; ours: {', '.join(sorted(ours))} (`--tasks list` lists lmms-eval's)"
        ]
    problems, leaves = [], []
    pending = [name for name in requested if name in ours]
    while pending:
        name = pending.pop()
        pending += ours[name].get("members", [])
        leaves += [ours[name]] if "env" in ours[name] else []
    for env, meta in {meta["env"]: meta for meta in leaves}.items():
        annotations = os.environ.get(f"{env}_ANNOTATIONS")
        if annotations:
            try:
                lmms_tasks.local_records(
                    annotations, os.environ.get(f"{env}_FORMAT"), meta["format"], os.environ.get(f"{env}_VIDEO_ROOT")
                )
            except DataError as e:
                problems.append(f"{env}_ANNOTATIONS={annotations}: {e}")
        elif not meta["hub"]:
            problems.append(
                f"{env}_ANNOTATIONS is not set, and this task has no hub dataset: set it (and {env}_VIDEO_ROOT)"
            )
    return problems


def check_results(output_path: Path, tasks: list[str], since: float) -> list[str]:
    """What is wrong with the results lmms-eval wrote under `output_path` after `since` (empty
    when nothing is): no results file, a requested task or group absent, a task with no sample."""
    files = [p for p in output_path.glob("**/*_results.json") if p.stat().st_mtime >= since]
    if not files:
        return [f"no results file written under {output_path}: the evaluation did not finish (see the log above)"]
    results = json.loads(max(files, key=lambda p: p.stat().st_mtime).read_text())
    problems = [f"no results for task {name!r}" for name in tasks if "*" not in name and name not in results["results"]]
    for name, counts in results.get("n-samples", {}).items():
        if not counts.get("effective"):
            problems.append(f"task {name!r} scored no samples")
    return problems
