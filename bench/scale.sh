#!/usr/bin/env bash
# Scale: one controller against simulated fleets (in-process SSH servers in a
# separate `maestro simulate` process). For each size: `exec true`, and the
# agent-runtime playbook (its tasks that stay inside each node's scratch dir:
# --skip-tags users,logging,service) first and no-change; wall time,
# controller CPU seconds and peak RSS, and wall time per node to show growth.
#
#   bash bench/scale.sh                                  # exec at 100/1000/10000, install at 100/1000
#   EXEC_SIZES="100 1000" INSTALL_SIZES="100" bash bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EXEC_SIZES=${EXEC_SIZES:-100 1000 10000}
INSTALL_SIZES=${INSTALL_SIZES:-100 1000}
FORKS=${FORKS:-100}
cargo build --release --quiet
M=$PWD/target/release/maestro
work=$(mktemp -d /tmp/maestro-bench-scale.XXXXXX)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -n), forks $FORKS"

simulate() { # N
    d=$work/sim-$1; rm -rf "$d"
    "$M" simulate --nodes "$1" --dir "$d" --max-connections "$FORKS" --scratch-vars 2>"$work/sim.log" &
    sim_pid=$!
    for _ in $(seq 1200); do [ -f "$d/ready" ] && return 0; sleep 0.1; done
    cat "$work/sim.log"; exit 1
}
stop_sim() { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=; }
measure() { # label N args... ; prints one row
    local label=$1 n=$2; shift 2
    if ! /usr/bin/time -f "%e %M %U %S" -o "$work/time" env HOME="$d/home" "$M" --sot "$d/sot" --db "$work/runs.db" "$@" >"$work/out" 2>&1; then
        echo "  $label: FAILED (see below)"; tail -5 "$work/out"; return
    fi
    read -r wall rss user sys < "$work/time"
    awk -v l="$label" -v n="$n" -v w="$wall" -v r="$rss" -v u="$user" -v s="$sys" \
        'BEGIN {printf "  %-32s %6d nodes  wall %7.2f s  (%6.2f ms/node)  cpu %6.2f s  peak RSS %7.1f MiB\n", l, n, w, 1000*w/n, u+s, r/1024}'
}
for n in $EXEC_SIZES; do
    simulate "$n"
    measure "exec true" "$n" exec all --forks "$FORKS" -- true
    stop_sim
done
for n in $INSTALL_SIZES; do
    simulate "$n"
    measure "install (first run)" "$n" play "$PWD/playbooks/agent-runtime.toml" --skip-tags users,logging,service --yes --forks "$FORKS" \
        --connect-timeout 60
    measure "install (no-change run)" "$n" play "$PWD/playbooks/agent-runtime.toml" --skip-tags users,logging,service --yes --forks "$FORKS" --connect-timeout 60
    grep -o 'changed=[0-9]* failed=[0-9]*' "$work/out" | sort | uniq -c | sed 's/^/    no-change run: /' | head -3
    stop_sim
done
