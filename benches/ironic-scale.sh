#!/usr/bin/env bash
# What one ironpxe costs a real Ironic at fleet scale (issue 24): per-request costs, the
# steady state with 1 % of the nodes changing per minute, change propagation, the first
# complete state after a cold start, and ironpxe's own CPU and RSS — at each N, side by side
# with the pre-refresh poller (derived from the measured walks). Writes its section of
# BENCHMARKS.md ("Ironic at fleet scale"); benches/run.sh keeps that section when it rewrites
# the rest. Reports only: nothing here fails on a number.
#
#   bash benches/ironic-scale.sh                 N = 2 000, 10 000, 100 000 (~25 min on 2 cores)
#   SCALE_N="2000 10000" bash benches/ironic-scale.sh
#
# Knobs: SCALE_N, SCALE_WINDOW_S (60), SCALE_API_WORKERS (2: Ironic's default is one per
# CPU), BENCHMARKS_OUT. Needs python3-venv and PyPI for Ironic (`.ci/ironic-venv`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCHMARKS_OUT:-$ROOT/BENCHMARKS.md}
read -r -a NS <<<"${SCALE_N:-2000 10000 100000}"
VENV=$(bash .ci/ironic-venv | tail -n 1)
cargo build --release --locked --quiet
# ironpxe's own `fields=` list at API `latest` (client.rs: NODE_FIELDS + PLACEMENT_FIELDS),
# so the bench's walk costs are the ones it pays.
FIELDS="uuid,name,provision_state,target_provision_state,boot_interface,deploy_interface"
FIELDS+=",inspect_interface,driver_info,instance_info,properties,driver_internal_info,extra"
FIELDS+=",resource_class,conductor_group,owner,shard"
args=()
for n in "${NS[@]}"; do args+=(--n "$n"); done
mkdir -p target/scale
"$VENV/bin/python" benches/ironic_scale.py --root "$ROOT" --venv "$VENV" \
    --ironpxe "$ROOT/target/release/ironpxe" --fields "$FIELDS" "${args[@]}" \
    --window "${SCALE_WINDOW_S:-60}" --api-workers "${SCALE_API_WORKERS:-2}" --reps 30 --notify \
    --scratch "$ROOT/target/scale" --report "$OUT" --notes "$(cat benches/ironic-scale-notes.md)"
echo "ironic-scale: wrote its section of $OUT" >&2
