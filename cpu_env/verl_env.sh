#!/usr/bin/env bash
# Builds .venv-verl, the venv in which tests/test_recipes_verl.py runs verl's own reward loop, from
# requirements-verl.lock; idempotent. Called by setup.sh: verl_env.sh UV RELOCK(0|1).
#
# Its own venv because verl 0.9.1 and OpenRLHF 0.11.2 pin different transformers (requirements-verl.in).
# Same uv cache and hard links as .venv; no bytecode compilation (it took 38 s of the 41 s here): the
# test's first run writes the bytecode of the modules it imports (~20 s once).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
uv="$1"
venv="$repo/.venv-verl"
stamp="$venv/.openrlhf-video-env"

if [[ "${2:-0}" == 1 ]]; then
  "$uv" pip compile -q "$here/requirements-verl.in" --override "$here/overrides.txt" --python-version 3.11 \
    --custom-compile-command "bash cpu_env/setup.sh --relock" -o "$here/requirements-verl.lock"
  echo "[cpu_env/setup] requirements-verl.lock rewritten" >&2
fi
key="$(cat "$here/requirements-verl.lock" "$here/overrides.txt" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$key" ]]; then
  t0=$SECONDS
  rm -rf "$venv"
  "$uv" venv -q --python python3 "$venv"
  "$uv" pip install -q --python "$venv/bin/python" --no-deps -r "$here/requirements-verl.lock"
  echo "$key" > "$stamp"
  echo "[cpu_env/setup] $venv built in $((SECONDS - t0)) s" >&2
fi
