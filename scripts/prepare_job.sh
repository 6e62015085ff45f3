#!/usr/bin/env bash
# Here, before a lent accelerator runs the campaign's next job: write that job's packs into .carry/
# and download the wheels the accelerator's image lacks into .whl/ (both ignored by git; name
# both in the device call's carry). Prints the size of what will travel (limit: 64 MiB) and the
# command to run there. Needs the ProMod3 dataset (foldlite data promod3) and PyPI.
#
#   scripts/prepare_job.sh            # then, on the device: scripts/accelerator_job.sh $OUT 540
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m foldlite campaign pack -o .carry
rm -rf .whl && mkdir -p .whl
# The accelerator image has jax (CUDA), optax, numpy, scipy, yaml, tqdm, absl-py; not these.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 -d .whl \
  dm-haiku==0.0.17 jmp==0.0.4 tabulate==0.9.0 biopython==1.85
tracked=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
other=$(git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .carry .whl | tail -1 | cut -f1)
total=$((tracked + ${other:-0} + carried))
printf 'travels: tracked %.1f MiB + untracked %.1f MiB + .carry/.whl %.1f MiB = %.1f MiB (limit 64)\n' \
  "$(echo "$tracked/1048576" | bc -l)" "$(echo "${other:-0}/1048576" | bc -l)" \
  "$(echo "$carried/1048576" | bc -l)" "$(echo "$total/1048576" | bc -l)"
[ "$total" -lt $((64 * 1048576)) ] || { echo "too large to travel" >&2; exit 1; }
echo 'device call: command "scripts/accelerator_job.sh $OUT 540", carry [".carry", ".whl"], timeout_s 600'
echo 'then here:   foldlite campaign adopt <files_at>; git add campaign; git commit'
