#!/usr/bin/env bash
# The whole pipeline rehearsed on this machine's CPU, from a fresh clone, in one command:
# sets up the CPU environment (cpu_env/setup.sh; seconds when it is already built), then runs
# `openrlhf-video demo` into runs/demo. Extra arguments go to the demo (`--help` lists them;
# a later --out wins).
set -euo pipefail
cd "$(dirname "$0")/.."
bash cpu_env/setup.sh
# `python -m` from this checkout runs its own code even when another clone's setup re-pointed the
# shared venv's editable install (the console script would follow that one).
exec .venv/bin/python -m openrlhf_video demo --out runs/demo "$@"
