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
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lmms_tasks

# `--tasks list` and friends print and exit without results; they succeed when lmms-eval does.
LISTINGS = {"list", "list_groups", "list_tags", "list_subtasks"}
# lmms-eval's CLI with Qwen2.5-VL's positions as the model was trained (transformers 5's generate
# gives the text after a video others: docs/upstream/), and, for runs of our `rlt_` tasks only,
# without indexing lmms-eval's own tasks (patches.py).
LMMS_EVAL = ("from openrlhf_video import patches; patches.transformers_rope_index_as_trained(); {}"
             "from lmms_eval.__main__ import cli_evaluate; cli_evaluate()")  # fmt: skip


def main(argv: list[str]) -> int:
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
    # Mistakes found before lmms-eval starts (~15 s): it would log them and still finish.
    ours = our_task_names()
    unknown = [
        name
        for name in (args.tasks or "").split(",")
        if name.startswith("rlt_") and "*" not in name and name not in ours
    ]
    if unknown:
        print(
            f"openrlhf-video eval: unknown task {', '.join(unknown)}; ours: {', '.join(sorted(ours))}", file=sys.stderr
        )
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


def our_task_names() -> set[str]:
    """The tasks and groups of lmms_tasks, read from their YAML files (lmms-eval's import is slow)."""
    yamls = "\n".join(path.read_text() for path in lmms_tasks.TASKS_DIR.rglob("*.yaml"))
    return set(re.findall(r"^(?:task|group):\s*(rlt_\w+)", yamls, re.M))


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
