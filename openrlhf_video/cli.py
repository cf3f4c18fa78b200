"""`openrlhf-video` command line: one subcommand per job, each owned by its module.

Subcommands are imported lazily so `serve-reward` or `data` never pay for torch, Ray or vLLM.
Every target is `main(argv: list[str]) -> int`.
"""

import importlib
import os
import sys
import warnings

SUBCOMMANDS = {
    "train": ("openrlhf_video.train", "GRPO on video with OpenRLHF's train_ppo_ray (our patches and plugin flags)"),
    "select": ("openrlhf_video.select", "variance-aware data selection: K rollouts per record, keep the informative"),
    "eval": ("openrlhf_video.evaluate", "lmms-eval with our tasks (adds --include_path, fails when lmms-eval fails)"),
    "serve-reward": ("reward_plugins.server", "HTTP reward server speaking OpenRLHF's remote-reward protocol"),
    "data": ("openrlhf_video.data.cli", "convert annotations to records, check a data config"),
    "demo": ("openrlhf_video.demo", "rehearse the whole pipeline on CPU with a tiny model and synthetic videos"),
}


# Third-party noise our commands turn down (deprecation and version warnings at import, vLLM's and
# transformers' info lines), here and in every process they start (lmms-eval, Ray workers, vLLM):
# a person then reads our stage lines and real errors. OPENRLHF_VIDEO_VERBOSE=1 shows it all.
QUIET_ENV = {"PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error", "VLLM_LOGGING_LEVEL": "WARNING"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if os.environ.get("OPENRLHF_VIDEO_VERBOSE") != "1":
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        # Off a terminal other libraries' tqdm bars (lmms-eval, transformers, vLLM) would "\r"-join
        # into huge log lines; ours print whole lines instead (openrlhf_video.progress).
        if not sys.stderr.isatty():
            os.environ.setdefault("TQDM_DISABLE", "1")
        warnings.simplefilter("ignore")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        width = max(map(len, SUBCOMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
        print("usage: openrlhf-video SUBCOMMAND [args...]\n\nsubcommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nopenrlhf-video: unknown subcommand {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
