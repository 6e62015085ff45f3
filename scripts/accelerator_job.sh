#!/usr/bin/env bash
# One job of the training campaign (foldlite/train/campaign.py) on a lent accelerator, in one
# call of at most ~9.5 minutes:
#
#   scripts/accelerator_job.sh OUT [BUDGET_SECONDS]      (default budget 540 s)
#
# Run from the repository root with the job's packs in .carry/ (`foldlite campaign pack -o
# .carry`) and, where the machine lacks them, the wheels in .whl/ (scripts/prepare_job.sh makes
# both). It installs the carried wheels, then `foldlite campaign job` unpacks the data,
# continues campaign/state (or starts from the campaign's init_weights), trains until the budget
# less the campaign's reserve, writes OUT/state first, then evaluates the EMA weights on the
# validation chains and writes OUT/weights.npz, OUT/metrics.jsonl, OUT/job.json and
# OUT/report.md. Back here: `foldlite campaign adopt OUT`, then commit campaign/.
#
# The same script runs on a CPU in the test suite (tests/test_campaign.py) with the tiny config;
# FOLDLITE_CAMPAIGN, FOLDLITE_JOB_PACKS, FOLDLITE_JOB_WHEELS and FOLDLITE_JOB_SET ("--set k=v
# ...") point it elsewhere.
set -euo pipefail
started=$(date +%s.%N)
out=${1:?usage: scripts/accelerator_job.sh OUT [BUDGET_SECONDS]}
budget=${2:-540}
cd "$(dirname "$0")/.."
wheels=${FOLDLITE_JOB_WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
  site=${FOLDLITE_JOB_SITE:-/tmp/foldlite-site}
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The compiled step is cached for a later job on the same machine (never across machines).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/foldlite-jax-cache}
shopt -s nullglob
packs=(${FOLDLITE_JOB_PACKS:-.carry}/*.fldpack)
if [ ${#packs[@]} -eq 0 ]; then
  echo "accelerator_job: no .fldpack files in ${FOLDLITE_JOB_PACKS:-.carry} (make them with: foldlite campaign pack -o .carry)" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec python3 -m foldlite campaign ${FOLDLITE_CAMPAIGN:+--campaign "$FOLDLITE_CAMPAIGN"} job \
  --packs "${packs[@]}" --out "$out" --budget "$budget" --started "$started" --no-progress \
  ${FOLDLITE_JOB_SET:+$FOLDLITE_JOB_SET}
