#!/bin/bash
# The dashboard's cost to the loop, before and after a change, measured alternately (one pair
# of runs each, ROUNDS times) so that the machine's drift falls on both alike.
#   benchmarks/dashboard_ab.sh OLD_CHECKOUT OUT_DIR [ROUNDS]
# OLD_CHECKOUT: a worktree of the earlier commit (git worktree add /tmp/old <commit>); both
# run with this checkout's .venv (python -m imports the checkout it runs from).
set -euo pipefail
old=$1 out=$2 rounds=${3:-4}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
for round in $(seq "$rounds"); do
  (cd "$old" && "$here/.venv/bin/python" benchmarks/dashboard.py --generations 20 --pairs 1 \
    --out "$out/before-$round.json")
  (cd "$here" && .venv/bin/python benchmarks/dashboard.py --generations 20 --pairs 1 \
    --out "$out/after-$round.json")
done
