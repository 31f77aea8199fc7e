#!/usr/bin/env bash
# Team scale: two controllers vs one on one simulated job. A simulated fleet
# (in-process SSH servers in a separate `maestro simulate` process) and a
# private PostgreSQL cluster on loopback (initdb into a temp dir, stopped by
# PID). Each job is `exec all --share --forks F -- CMD`; with two, the second
# controller `maestro join`s the run as soon as it is recorded. Prints wall
# time, nodes done by each controller, and the ratio one/two (target >= 1.7x).
#
# Two cases by default, 10,000 nodes each:
# - `sleep 0.2`, forks 30: each controller is bound by its forks and the
#   nodes' latency, as a team's controllers on their own machines are;
# - `true`, forks 100: bound by CPU, which on one machine both controllers,
#   the simulated fleet and PostgreSQL share, so a second controller on the
#   same cores cannot help (shown for honesty, not as the target case).
#
#   bash bench/team.sh
#   NODES=1000 CASES='sleep 0.05@20' bash bench/team.sh
#   MAESTRO_BIN=target/debug/maestro NODES=200 bash bench/team.sh   # the script itself, no release build
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-10000}
CASES=${CASES:-sleep 0.2@30;true@100}
if [ -z "${MAESTRO_BIN:-}" ]; then cargo build --release --quiet --bin maestro; fi
M=${MAESTRO_BIN:-$PWD/target/release/maestro}
work=$(mktemp -d /tmp/maestro-bench-team.XXXXXX)
sim_pid= pg_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    [ -n "$pg_pid" ] && kill -INT "$pg_pid" 2>/dev/null && wait "$pg_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

bin=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [ "$(id -u)" = 0 ]; then chown 65534:65534 "$work"; as_pg=(setpriv --reuid=65534 --regid=65534 --clear-groups); fi
"${as_pg[@]}" "$bin/initdb" -D "$work/pg" -U maestro --auth=trust -E UTF8 --no-sync >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/postgres" -D "$work/pg" -k "$work" -p "$port" -c listen_addresses=127.0.0.1 -c fsync=off \
    -c max_connections=50 >"$work/pg.log" 2>&1 &
pg_pid=$!
for _ in $(seq 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
db() { # NAME -> a fresh database's URL
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U maestro "$1"
    echo "postgres://maestro@127.0.0.1:$port/$1"
}

"$M" simulate --nodes "$NODES" --dir "$work/sim" --max-connections 200 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1200); do [ -f "$work/sim/ready" ] && break; sleep 0.1; done
[ -f "$work/sim/ready" ] || { cat "$work/sim.log"; exit 1; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $NODES simulated nodes"

ctl() { # DB ARGS... (a controller)
    env HOME="$work/sim/home" "$M" --sot "$work/sim/sot" --db "$1" "${@:2}"
}
now() { date +%s.%N; }
run_id() { # DB -> the newest run's id once it is recorded
    for _ in $(seq 600); do
        id=$(ctl "$1" --json runs 2>/dev/null | head -1 | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
        [ -n "$id" ] && { echo "$id"; return; }
        sleep 0.05
    done
    echo "no run recorded" >&2; exit 1
}
done_by() { # DB RUN
    ctl "$1" runs show "$2" | sed -n 's/^shared: started by [^,]*, done by \([^·]*\) ·.*/\1/p'
}

n=0
IFS=';' read -ra cases <<<"$CASES"
for case in "${cases[@]}"; do
CMD=${case%@*} FORKS=${case##*@} n=$((n + 1))
echo "command: $CMD, forks $FORKS per controller"
one=$(db "one$n")
t0=$(now)
ctl "$one" exec all --share --forks "$FORKS" -- "$CMD" >"$work/one.out" 2>&1 || { tail -5 "$work/one.out"; exit 1; }
t1=$(now)
echo "  one controller:  $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%7.2f s", b-a}')  done by: $(done_by "$one" "$(run_id "$one")")"

two=$(db "two$n")
t2=$(now)
ctl "$two" exec all --share --forks "$FORKS" -- "$CMD" >"$work/a.out" 2>&1 &
a=$!
run=$(run_id "$two")
ctl "$two" join "$run" --forks "$FORKS" >"$work/b.out" 2>&1 || { tail -5 "$work/b.out"; exit 1; }
wait "$a" || { tail -5 "$work/a.out"; exit 1; }
t3=$(now)
echo "  two controllers: $(awk -v a="$t2" -v b="$t3" 'BEGIN {printf "%7.2f s", b-a}')  done by: $(done_by "$two" "$run")"
grep -h '^RECAP' "$work/a.out" "$work/b.out" | sed 's/^/    /'
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {printf "  two controllers are %.2fx as fast as one (target >= 1.7x)\n", (b-a)/(d-c)}'
done
