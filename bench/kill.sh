#!/usr/bin/env bash
# Benchmark: the kill switch from the CLI, cold — `maestro kill AGENT`
# (commit the engaged state, connect, stop the agent, every node confirms
# none of its processes is left) — against `maestro exec all -- true` on the
# same real sshd nodes. Prints medians and the ratio measured in the same
# run (target: kill <= exec + 20%). Needs root (the real-sshd fleet) and a
# release build.
#
# Before each kill, every node runs the agent as the node-side contract says
# (a setsid session leader with a child, its pidfile, and a straggler outside
# the session, all with MAESTRO_AGENT=NAME), so each rep really stops three
# processes per node.
#
#   bash bench/kill.sh                       # 50 real nodes, 5 reps
#   REAL=24 REPS=7 NET=127.0.21 bash bench/kill.sh
#   PROFILE=debug bash bench/kill.sh         # the debug build (both sides use the same binary)
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${REAL:-50}
REPS=${REPS:-5}
NET=${NET:-127.0.21}   # the fleet's address block (kill's, see tests/common/fleet.rs)
AGENT=bench-agent
PROFILE=${PROFILE:-release}

if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
M=$PWD/target/$PROFILE/maestro
work=$(mktemp -d /tmp/maestro-bench-kill.XXXXXX)
cleanup() {
    FLEET_NET_PREFIX=$NET bash tests/fleet/fleet.sh stop "$work/fleet" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
echo "maestro $($M --version | cut -d' ' -f2) ($PROFILE build)"

FLEET_NET_PREFIX=$NET bash tests/fleet/fleet.sh start "$work/fleet" "$REAL" --owner-pid $$ >/dev/null
# shellcheck disable=SC1091
. "$work/fleet/fleet.env"
home=$work/home
sot=$work/sot
mkdir -p "$home/.ssh" "$sot"
cp "$work/fleet/id_ed25519" "$home/.ssh/"
cp "$work/fleet/known_hosts" "$home/.ssh/"
printf '[maestro]\nname = "bench"\n\n[connection]\nuser = "root"\nport = %s\n' "$FLEET_PORT" >"$sot/maestro.toml"
for i in $(seq 1 "$REAL"); do
    printf '[node.n%02d]\naddress = "%s.%d"\n\n' "$i" "$NET" "$i"
done >"$sot/nodes.toml"
printf '[model.m1]\nprovider = "local"\n' >"$sot/models.toml"
printf '[agent.%s]\nmodel = "m1"\nautonomy = "L1"\n' "$AGENT" >"$sot/agents.toml"
git -C "$sot" init -q
git -C "$sot" add -A
git -C "$sot" -c user.name=bench -c user.email=bench@example.org commit -qm "bench SoT"
names=$(awk '{print $1}' "$work/fleet/nodes.tsv")

# shellcheck disable=SC2016  # expanded on the node
start_agent='mkdir -p /run/maestro
MAESTRO_AGENT='$AGENT' setsid sh -c "sleep 86400 & exec sleep 86401" </dev/null >/dev/null 2>&1 &
p=$!
read -r st </proc/$p/stat; r=${st##*) }; set -- $r; shift 19
printf "%s\n%s\n" "$p" "$1" >/run/maestro/agent-'$AGENT'.pid
MAESTRO_AGENT='$AGENT' setsid sleep 86402 </dev/null >/dev/null 2>&1 &'
start_agents() {
    for n in $names; do
        FLEET_NET_PREFIX=$NET bash tests/fleet/fleet.sh node-exec "$work/fleet" "$n" -- sh -c "$start_agent"
    done
}
m() { HOME=$home MAESTRO_ACTOR="Bench <bench@example.org>" "$M" --sot "$sot" --db "$work/runs.db" "$@"; }
run_kill() { m kill "$AGENT" --reason "bench" --forks "$REAL" >"$work/kill.out"; }
run_exec() { m exec all --forks "$REAL" -- true >/dev/null; }
release() { m kill --release "$AGENT" --reason "bench done" --forks "$REAL" >/dev/null; }

start_agents; run_kill; release; run_exec   # warm caches
: >"$work/t_kill"
: >"$work/t_exec"
for _ in $(seq "$REPS"); do
    start_agents
    t0=$(now); run_kill; t1=$(now); run_exec; t2=$(now)
    grep -q "$REAL/$REAL nodes confirmed" "$work/kill.out" || { cat "$work/kill.out"; exit 1; }
    stopped=$(grep -c ' stopped (pid' "$work/kill.out" || true)
    [ "$stopped" = "$REAL" ] || { echo "only $stopped of $REAL nodes had the agent stopped"; cat "$work/kill.out"; exit 1; }
    echo $(((t1 - t0) / 1000000)) >>"$work/t_kill"
    echo $(((t2 - t1) / 1000000)) >>"$work/t_exec"
    release
done
k=$(median <"$work/t_kill")
e=$(median <"$work/t_exec")
echo
echo "kill switch on $REAL real sshd nodes, 3 agent processes each ($REPS reps, ms):"
printf '  %-44s median %6s  (min..max %s)\n' "maestro kill (engage -> all confirmed)" "$k" "$(minmax <"$work/t_kill")"
printf '  %-44s median %6s  (min..max %s)\n' "maestro exec all -- true" "$e" "$(minmax <"$work/t_exec")"
awk -v k="$k" -v e="$e" 'BEGIN {printf "  ratio kill / exec: %.2fx (target <= 1.2x)\n", k / e}'
