#!/usr/bin/env bash
# Telemetry cost on real sshd nodes: starts a fleet of N nodes (tests/fleet),
# streams `maestro top` from all of them for SECS seconds at 1 Hz, then
# prints the samplers' CPU (utime+stime+cutime+cstime from /proc, so the
# fetches they forked count too) per node, and the controller's CPU and RSS.
#
#   bash bench/telemetry.sh [N=50] [SECS=30] [NET=127.0.22]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50} secs=${2:-30} net=${3:-127.0.22}
maestro=${MAESTRO:-target/release/maestro}
[ -x "$maestro" ] || maestro=target/debug/maestro
dir=$(mktemp -d /tmp/maestro-bench-telemetry.XXXXXX)
trap 'bash tests/fleet/fleet.sh stop "$dir/fleet" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
FLEET_NET_PREFIX=$net bash tests/fleet/fleet.sh start "$dir/fleet" "$n" >/dev/null
mkdir -p "$dir/sot"
printf '[maestro]\nname = "bench"\n[connection]\nuser = "root"\n' >"$dir/sot/maestro.toml"
cp "$dir/fleet/nodes.toml" "$dir/sot/"
printf '[group.fleet]\n' >"$dir/sot/groups.toml"
namespaces=$(for i in $(seq "$n"); do
    bash tests/fleet/fleet.sh node-exec "$dir/fleet" "$i" -- readlink /proc/self/ns/mnt
done | sort -u)
"$maestro" --sot "$dir/sot" --db "$dir/db" --json top all -i "$dir/fleet/id_ed25519" \
    --known-hosts "$dir/fleet/known_hosts" >"$dir/out.jsonl" &
pid=$!
sleep 3
ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] + f[14] + f[15] }' "/proc/$1/stat"; }
samplers() {
    for p in /proc/[0-9]*; do
        grep -qa 'maestro telemetry sampler' "$p/cmdline" 2>/dev/null || continue
        ns=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
        grep -qxF "$ns" <<<"$namespaces" && echo "${p#/proc/}"
    done
}
list=$(samplers)
declare -A before
for s in $list; do before[$s]=$(ticks "$s"); done
c0=$(ticks "$pid")
sleep "$secs"
total=0 count=0
for s in $list; do
    [ -r "/proc/$s/stat" ] || continue
    total=$((total + $(ticks "$s") - ${before[$s]})) count=$((count + 1))
done
c1=$(ticks "$pid")
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
kill -INT "$pid"; wait "$pid" || true
hz=$(getconf CLK_TCK)
samples=$(wc -l <"$dir/out.jsonl")
awk -v t="$total" -v c="$count" -v s="$secs" -v hz="$hz" -v ctl=$((c1 - c0)) -v rss="$rss" -v n="$n" -v samples="$samples" 'BEGIN {
    printf "nodes %d, %d s at 1 Hz, %d samples received\n", n, s, samples
    printf "sampler CPU per node: %.3f %% of one core (%d samplers, %d ticks)\n", 100 * t / hz / s / c, c, t
    printf "controller CPU: %.2f %% of one core, RSS %.1f MiB\n", 100 * ctl / hz / s, rss / 1024
}'
