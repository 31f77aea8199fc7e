#!/usr/bin/env bash
# Benchmark: the 20-task agent-runtime install (maestro install --profile user)
# on real sshd nodes, against bare parallel OpenSSH shipping the very same
# compiled script to every node (`ssh node sh -c 'eval "$(cat)"' < script &`):
# the practical floor, since it does exactly the node-side work maestro does.
# First run on fresh nodes, then the no-change run; medians of REPS runs, each
# on a freshly started fleet. Needs root and a release build.
#
#   bash bench/install.sh              # 50 nodes, 3 repetitions
#   N=10 REPS=5 bash bench/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
REPS=${REPS:-3}
cargo build --release --quiet
M=$PWD/target/release/maestro
work=$(mktemp -d /tmp/maestro-bench-install.XXXXXX)
cleanup() { bash tests/fleet/fleet.sh stop "$work/fleet" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(ssh -V 2>&1)"
fresh_fleet() {
    bash tests/fleet/fleet.sh stop "$work/fleet" >/dev/null 2>&1 || true
    bash tests/fleet/fleet.sh start "$work/fleet" "$N" --owner-pid $$ >/dev/null
    # shellcheck disable=SC1091
    . "$work/fleet/fleet.env"
    home=$work/home; rm -rf "$home" "$work/sot"; mkdir -p "$home/.ssh" "$work/sot"
    cp "$work/fleet/id_ed25519" "$work/fleet/known_hosts" "$home/.ssh/"
    printf '[maestro]\nname = "bench"\n\n[connection]\nport = %s\n\n[paths]\nprofiles = "%s"\nplaybooks = "%s"\nhardening = "%s"\n' \
        "$FLEET_PORT" "$PWD/profiles" "$PWD/playbooks" "$PWD/hardening" > "$work/sot/maestro.toml"
    printf '[group.fleet]\n' > "$work/sot/groups.toml"
    cp "$work/fleet/nodes.toml" "$work/sot/nodes.toml"
}
mae() { HOME=$home "$M" --sot "$work/sot" --db "$work/runs.db" install --profile user --yes --forks "$N" "$@" >/dev/null; }
ssh_all() {
    for n in $(awk '{print $1}' "$work/fleet/nodes.tsv"); do
        ssh -F "$work/fleet/ssh_config" "$n" "sh -c 'eval \"\$(cat)\"'" < "$work/scripts/$n.sh" >/dev/null &
    done
    wait
}
for f in m1 m2 s1 s2; do : > "$work/t_$f"; done
for _ in $(seq "$REPS"); do
    fresh_fleet
    HOME=$home "$M" --sot "$work/sot" install --profile user --emit-scripts "$work/scripts" 2>"$work/emit.log" || { cat "$work/emit.log"; exit 1; }
    t0=$(now); mae; t1=$(now); mae; t2=$(now)
    echo $(( (t1 - t0) / 1000000 )) >> "$work/t_m1"; echo $(( (t2 - t1) / 1000000 )) >> "$work/t_m2"
    fresh_fleet
    t0=$(now); ssh_all; t1=$(now); ssh_all; t2=$(now)
    echo $(( (t1 - t0) / 1000000 )) >> "$work/t_s1"; echo $(( (t2 - t1) / 1000000 )) >> "$work/t_s2"
done
# Both must have installed: the second maestro run changes nothing.
HOME=$home "$M" --sot "$work/sot" --db "$work/runs.db" install --profile user --check --limit n01 | grep -q 'changed=0' || { echo "the baseline did not install what maestro installs"; exit 1; }
m1=$(median < "$work/t_m1"); m2=$(median < "$work/t_m2"); s1=$(median < "$work/t_s1"); s2=$(median < "$work/t_s2")
echo
echo "agent-runtime install (20 tasks) on $N real sshd nodes, median of $REPS (ms):"
printf '  %-34s first %6s   no-change %6s\n' "maestro install --forks $N" "$m1" "$m2"
printf '  %-34s first %6s   no-change %6s\n' "bare parallel ssh, same script" "$s1" "$s2"
awk -v a="$m1" -v b="$s1" -v c="$m2" -v d="$s2" 'BEGIN {printf "  ratio maestro / bare OpenSSH: first %.2fx, no-change %.2fx (target <= 1.0x)\n", a/b, c/d}'
