#!/usr/bin/env bash
# Benchmark: `maestro exec` against bare parallel OpenSSH on real sshd nodes,
# and against simulated fleets for scale. Prints medians and ratios measured
# in the same run. Needs root (the real-sshd fleet) and a release build.
#
#   bash bench/exec.sh                 # 50 real nodes, 1,000 simulated
#   REAL=10 SIM="100 1000 10000" REPS=7 bash bench/exec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${REAL:-50}
SIM=${SIM:-1000}
REPS=${REPS:-5}

cargo build --release --quiet
M=$PWD/target/release/maestro
work=$(mktemp -d /tmp/maestro-bench.XXXXXX)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    bash tests/fleet/fleet.sh stop "$work/fleet" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
echo "maestro $($M --version | cut -d' ' -f2), $(ssh -V 2>&1)"

if [ "$REAL" -gt 0 ]; then
    bash tests/fleet/fleet.sh start "$work/fleet" "$REAL" --owner-pid $$ >/dev/null
    # shellcheck disable=SC1091
    . "$work/fleet/fleet.env"
    home=$work/home; mkdir -p "$home/.ssh" "$work/sot"
    cp "$work/fleet/id_ed25519" "$home/.ssh/"; cp "$work/fleet/known_hosts" "$home/.ssh/"
    printf '[maestro]\nname = "bench"\n\n[connection]\nuser = "root"\nport = %s\n' "$FLEET_PORT" > "$work/sot/maestro.toml"
    for i in $(seq 1 "$REAL"); do
        printf '[node.n%02d]\naddress = "127.0.10.%d"\n\n' "$i" "$i"
    done > "$work/sot/nodes.toml"
    names=$(awk '{print $1}' "$work/fleet/nodes.tsv")
    run_maestro() { HOME=$home "$M" --sot "$work/sot" --db "$work/runs.db" exec all --forks "$REAL" -- true >/dev/null; }
    run_ssh() {
        for n in $names; do ssh -F "$work/fleet/ssh_config" "$n" true & done
        wait
    }
    run_maestro; run_ssh   # warm caches
    : > "$work/t_maestro"; : > "$work/t_ssh"
    for _ in $(seq "$REPS"); do
        t0=$(now); run_maestro; t1=$(now); run_ssh; t2=$(now)
        echo $(( (t1 - t0) / 1000000 )) >> "$work/t_maestro"
        echo $(( (t2 - t1) / 1000000 )) >> "$work/t_ssh"
    done
    m=$(median < "$work/t_maestro"); s=$(median < "$work/t_ssh")
    echo
    echo "exec true on $REAL real sshd nodes ($REPS reps, ms):"
    printf '  %-28s median %6s  (min..max %s)\n' "maestro exec --forks $REAL" "$m" "$(minmax < "$work/t_maestro")"
    printf '  %-28s median %6s  (min..max %s)\n' "ssh node true & (x$REAL)" "$s" "$(minmax < "$work/t_ssh")"
    awk -v m="$m" -v s="$s" 'BEGIN {printf "  ratio maestro / bare OpenSSH: %.2fx (target <= 1.2x)\n", m / s}'
    bash tests/fleet/fleet.sh stop "$work/fleet" >/dev/null
fi

for n in $SIM; do
    d=$work/sim-$n
    forks=100
    "$M" simulate --nodes "$n" --dir "$d" --max-connections "$forks" 2>"$work/sim.log" &
    sim_pid=$!
    for _ in $(seq 600); do [ -f "$d/ready" ] && break; sleep 0.1; done
    [ -f "$d/ready" ] || { cat "$work/sim.log"; exit 1; }
    : > "$work/t_sim"
    for _ in $(seq "$REPS"); do
        /usr/bin/time -f "%e %M %U %S" -o "$work/time" env HOME="$d/home" \
            "$M" --sot "$d/sot" --db "$work/sim.db" exec all --forks "$forks" -- true >/dev/null
        cat "$work/time" >> "$work/t_sim"
    done
    kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=
    echo
    echo "exec true on $n simulated nodes (separate simulator process, --forks $forks, $REPS reps):"
    awk '{print $1}' "$work/t_sim" | median | xargs printf '  wall median %s s'
    awk '{print $1}' "$work/t_sim" | minmax | xargs printf ' (min..max %s)\n'
    awk '{print $2}' "$work/t_sim" | sort -n | tail -1 | awk '{printf "  controller peak RSS %.1f MiB\n", $1/1024}'
    awk '{print $3+$4}' "$work/t_sim" | median | xargs printf '  controller CPU median %s s (user+sys)\n'
done
