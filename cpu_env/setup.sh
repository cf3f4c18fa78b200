#!/usr/bin/env bash
# Builds this clone's CPU environment (tests, CPU demo) in .venv from nothing; idempotent.
#
#   bash cpu_env/setup.sh            # .venv: this clone's own venv, from requirements.lock
#   bash cpu_env/setup.sh --relock   # resolve requirements.in again and rewrite requirements.lock
#
# uv installs every package by hard link from its cache (~/.cache/uv, shared by the clones on a
# machine), so each clone has its own venv running its own code, and a second clone is ready in
# about 40 s (bytecode compilation; imports take twice as long without it). A ready clone whose
# lock, shims and this script are unchanged is checked in seconds. GPU machines do not use this
# script: they `pip install -e ".[train,eval]"` (see README).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$repo/.venv"
py="$venv/bin/python"
stamp="$venv/.openrlhf-video-env"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/openrlhf-video"
uv_version=0.13.8
relock=0
[[ "${1:-}" == "--relock" ]] && relock=1

log() { echo "[cpu_env/setup] $*" >&2; }

# uv itself, pinned, in a small venv of its own (never in the system Python).
uv="$cache/uv-$uv_version/bin/uv"
if [[ ! -x "$uv" ]]; then
  mkdir -p "$cache"
  python3 -m venv "$cache/uv-$uv_version"
  "$cache/uv-$uv_version/bin/python" -m pip install -q "uv==$uv_version"
fi
# The CPU torch wheel comes from the machine's pip find-links (torch==2.13.0 on the registry is a
# CUDA build); uv reads no pip configuration, so hand it over.
find_links="${UV_FIND_LINKS:-${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}}"
export UV_FIND_LINKS="$find_links" UV_PYTHON_DOWNLOADS=never

if [[ $relock == 1 ]]; then
  "$uv" pip compile -q "$here/requirements.in" --override "$here/overrides.txt" --python-version 3.11 \
    --custom-compile-command "bash cpu_env/setup.sh --relock" -o "$here/requirements.lock"
  log "requirements.lock rewritten"
fi

key="$(cat "$here/requirements.lock" "$here/overrides.txt" "$here"/cpu_only_shims/* "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)"
[[ -L "$venv" ]] && rm "$venv"  # a link to a venv shared between clones (older setup.sh)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$key" ]]; then
  t0=$SECONDS
  log "building the CPU venv in $venv"
  rm -rf "$venv"
  "$uv" venv -q --python python3 "$venv"
  # Exactly the lock, no resolution; bytecode compiled (this machine may set PYTHONDONTWRITEBYTECODE).
  grep -v '^flash-attn==' "$here/requirements.lock" > "$venv/requirements-without-flash-attn.txt"
  if ! "$uv" pip install -q --python "$py" --no-deps --compile-bytecode -r "$venv/requirements-without-flash-attn.txt"; then
    log "install failed: torch==2.13.0+cpu needs a CPU wheel in pip's find-links or UV_FIND_LINKS"
    exit 1
  fi
  # flash-attn is source-only and needs CUDA: built without its kernels against the venv's torch
  # (OpenRLHF uses only its pure-torch helpers); uv caches the wheel for the next clone.
  FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE FLASH_ATTENTION_FORCE_BUILD=TRUE \
    "$uv" pip install -q --python "$py" --no-deps --no-build-isolation --compile-bytecode \
    "$(grep '^flash-attn==' "$here/requirements.lock")"
  log "venv built in $((SECONDS - t0)) s"
fi

# CPU-only shims (cheap: always re-copied so an edited shim takes effect).
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$here"/cpu_only_shims/* "$site/"
# The project itself, editable, pointing at this clone (no dependencies: the lock has them).
"$uv" pip install -q --python "$py" --no-deps --no-build-isolation -e "$repo"
echo "$key" > "$stamp"
bash "$here/verl_env.sh" "$uv" "$relock"  # [recipes]: verl in a venv of its own, .venv-verl
log "ready: $venv"
