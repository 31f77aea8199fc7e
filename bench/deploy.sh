#!/usr/bin/env bash
# Benchmark: `maestro deploy` of a 1 MiB artifact to N real sshd nodes against
# parallel `scp` + `ssh` of the same file (copy, check its sha256, unpack,
# switch a link). maestro does more (probe, the node's digest check, start,
# health check); the target is <= 1.0x. Prints medians and the ratio measured
# in the same run. Needs root (the real-sshd fleet).
#
#   bash bench/deploy.sh                       # 50 nodes, 3 reps, release build
#   REAL=10 REPS=5 PROFILE=debug bash bench/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${REAL:-50}
REPS=${REPS:-3}
PROFILE=${PROFILE:-release}
export FLEET_NET_PREFIX=${FLEET_NET_PREFIX:-127.0.40}

if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
M=$PWD/target/$PROFILE/maestro
work=$(mktemp -d /tmp/maestro-bench-deploy.XXXXXX)
cleanup() {
    bash tests/fleet/fleet.sh stop "$work/fleet" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r); maestro $PROFILE build"
bash tests/fleet/fleet.sh start "$work/fleet" "$REAL" --owner-pid $$ >/dev/null
# shellcheck disable=SC1091
. "$work/fleet/fleet.env"
home=$work/home; mkdir -p "$home/.ssh" "$work/sot/artifacts"
cp "$work/fleet/id_ed25519" "$home/.ssh/"; cp "$work/fleet/known_hosts" "$home/.ssh/"
printf '[maestro]\nname = "bench"\n\n[connection]\nuser = "root"\nport = %s\n' "$FLEET_PORT" >"$work/sot/maestro.toml"
for i in $(seq 1 "$REAL"); do
    printf '[node.n%02d]\naddress = "%s.%d"\nvars = { loopback = "%s.%d" }\n\n' "$i" "$FLEET_NET_PREFIX" "$i" "$FLEET_NET_PREFIX" "$i"
done >"$work/sot/nodes.toml"
printf '[model.m]\nprovider = "vllm"\n' >"$work/sot/models.toml"
{
    printf '[agent.bench]\nmodel = "m"\nautonomy = "L1"\ncommand = "sleep 3600"\n'
    printf 'health = { command = "true", retries = 1, min_healthy = "0s" }\n\n'
} >"$work/sot/agents.toml"
# One version per deploy (the first is a warm-up): 1 MiB of incompressible
# bytes and a marker, so each deploy really sends and switches.
for v in $(seq 0 "$REPS"); do
    d=$work/src-$v; mkdir -p "$d"
    head -c 1048576 /dev/urandom >"$d/blob"; echo "$v" >"$d/VERSION"
    tar -C "$d" -cf - blob VERSION | gzip -1 >"$work/sot/artifacts/bench-1.0.$v.tar.gz"
    sum=$(sha256sum <"$work/sot/artifacts/bench-1.0.$v.tar.gz" | cut -d' ' -f1)
    printf '[agent.bench.versions."1.0.%s"]\nartifact = "artifacts/bench-1.0.%s.tar.gz"\nsha256 = "%s"\n\n' "$v" "$v" "$sum" >>"$work/sot/agents.toml"
done
echo "artifact: $(stat -c %s "$work/sot/artifacts/bench-1.0.1.tar.gz") bytes"
names=$(awk '{print $1}' "$work/fleet/nodes.tsv")
run_maestro() {
    HOME=$home "$M" --sot "$work/sot" --db "$work/runs.db" deploy "bench@1.0.$1" --limit all \
        --forks "$REAL" --yes >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
}
run_scp() {
    f=$work/sot/artifacts/bench-1.0.$1.tar.gz
    for n in $names; do
        {
            scp -q -F "$work/fleet/ssh_config" "$f" "$n:/tmp/bench.tar.gz" &&
                ssh -F "$work/fleet/ssh_config" "$n" "sha256sum /tmp/bench.tar.gz >/dev/null && mkdir -p /opt/scp/$1 && tar -xzf /tmp/bench.tar.gz -C /opt/scp/$1 && ln -sfn $1 /opt/scp/current && rm /tmp/bench.tar.gz"
        } &
    done
    wait
}
run_maestro 0; run_scp 0 # warm caches
: >"$work/t_m"; : >"$work/t_s"
for v in $(seq 1 "$REPS"); do
    t0=$(now); run_maestro "$v"; t1=$(now); run_scp "$v"; t2=$(now)
    echo $(((t1 - t0) / 1000000)) >>"$work/t_m"
    echo $(((t2 - t1) / 1000000)) >>"$work/t_s"
done
m=$(median <"$work/t_m"); s=$(median <"$work/t_s")
echo
echo "deploy of a 1 MiB artifact to $REAL real sshd nodes ($REPS reps, ms):"
printf '  %-34s median %6s  (min..max %s)\n' "maestro deploy --forks $REAL" "$m" "$(minmax <"$work/t_m")"
printf '  %-34s median %6s  (min..max %s)\n' "scp + ssh (unpack, link) x$REAL" "$s" "$(minmax <"$work/t_s")"
awk -v m="$m" -v s="$s" 'BEGIN {printf "  ratio maestro / scp+ssh: %.2fx (target <= 1.0x)\n", m / s}'
