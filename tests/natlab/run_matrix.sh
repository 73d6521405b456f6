#!/usr/bin/env bash
# Runs the NAT matrix once and renders the grid into tests/natlab/results/.
# usage: tests/natlab/run_matrix.sh [build-dir] [extra gtest args...]   (root; ~1.5 min)
# Env passes through: ICEPUNCH_NATLAB_STUN=alt|same, ICEPUNCH_NATLAB_NO_VERIFY=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
shift || true
exe=$build/tests/natlab/natlab_matrix_test
[ -x "$exe" ] || { echo "run_matrix: $exe not built (ninja -C $build)" >&2; exit 1; }
out=${ICEPUNCH_NATLAB_OUT:-$here/results/cells.jsonl}
mkdir -p "$(dirname "$out")"
rm -f "$out"
SECONDS=0
rc=0
ICEPUNCH_NATLAB_OUT=$out ICEPUNCH_NATLAB_LAB=$here/lab.sh "$exe" "$@" || rc=$?
echo "run_matrix: exit $rc after $SECONDS s"
if [ -s "$out" ]; then
  python3 "$here/render_grid.py" "$out" --out "$(dirname "$out")"
fi
exit $rc
