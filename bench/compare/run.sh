#!/usr/bin/env bash
# Comparison benchmark (issue 6): the agent-runtime install (`maestro install
# --profile user`, 20 tasks + 1 handler) on one real fleet of sshd nodes, by
#   maestro          maestro install --profile user --yes --forks N
#   ssh              bare parallel OpenSSH shipping maestro's own compiled
#                    script to every node (the floor: same node-side work)
#   sh               bare parallel OpenSSH running a hand-written POSIX sh
#                    script doing the same steps unconditionally
#                    (handwritten.sh, `ssh node 'sh -s'`)
#   ansible          ansible-core, default configuration, forks = N
#   ansible-tuned    ansible-core with pipelining, ControlPersist, no facts
#   pyinfra          pyinfra --parallel N
# For every fleet size, tool and repetition: a fresh fleet, the first run
# (fresh nodes), then the no-change run, each timed and checked. A failed run
# is reported FAILED with its log, never timed. See bench/compare/README.md.
#
#   bash bench/compare/run.sh                       # SIZES="10 50" REPS=3
#   SIZES=10 REPS=1 TOOLS="maestro ansible-tuned" bash bench/compare/run.sh
#
# Environment: SIZES, REPS, REPS_<N> (repetitions for size N, e.g. REPS_50=1),
# TOOLS, EQUIV (1: first check on a 2-node fleet that every tool leaves the
# nodes in the same state; 0: skip), BENCH_VENV (default
# /tmp/maestro-bench-venv), MAESTRO_BIN (default target/release/maestro; it is
# copied, never built), FLEET_NET_PREFIX (default 127.0.40). Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
HERE=$REPO/bench/compare
SIZES=${SIZES-10 50}
REPS=${REPS:-3}
TOOLS=${TOOLS:-maestro ssh sh ansible ansible-tuned pyinfra}
EQUIV=${EQUIV:-1}
VENV=${BENCH_VENV:-/tmp/maestro-bench-venv}
export FLEET_NET_PREFIX=${FLEET_NET_PREFIX:-127.0.40}
FLEET=$REPO/tests/fleet/fleet.sh

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (the fleet uses mount namespaces)" >&2; exit 1; }
src_bin=${MAESTRO_BIN:-$REPO/target/release/maestro}
[ -x "$src_bin" ] || { echo "run.sh: no maestro binary at $src_bin (cargo build --release first)" >&2; exit 1; }

work=$(mktemp -d /tmp/maestro-bench-compare.XXXXXX)
logs=$work/logs
mkdir -p "$logs"
fleet=$work/fleet
cleanup() {
    bash "$FLEET" stop "$fleet" >/dev/null 2>&1 || true
    rm -rf "$fleet/nodes"
}
trap cleanup EXIT
# A snapshot: the tree may be rebuilt while this runs.
M=$work/maestro
cp "$src_bin" "$M"

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# --- the tools -------------------------------------------------------------
need_venv=0
case " $TOOLS " in *" ansible"* | *" pyinfra "*) need_venv=1 ;; esac
if [ "$need_venv" = 1 ] && { [ ! -x "$VENV/bin/ansible-playbook" ] || [ ! -x "$VENV/bin/pyinfra" ]; }; then
    echo "creating $VENV (pip install -r bench/compare/requirements.txt)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi
PY=$VENV/bin/python
[ -x "$PY" ] || PY=python3
v_maestro=$("$M" --version 2>/dev/null || echo "maestro (unknown version)")
v_ansible=$("$VENV/bin/ansible-playbook" --version 2>/dev/null | head -1 || true)
v_pyinfra=$("$VENV/bin/pyinfra" --version 2>/dev/null | head -1 | sed 's/^pyinfra: //' || true)
v_python=$("$PY" --version 2>&1 || python3 --version)
v_ssh=$(ssh -V 2>&1)
echo "maestro:  $v_maestro"
echo "ansible:  $v_ansible (ansible-core; $v_python)"
echo "pyinfra:  $v_pyinfra ($("$PY" -c 'import paramiko; print("paramiko", paramiko.__version__)' 2>/dev/null || echo "not installed"))"
echo "openssh:  $v_ssh"
echo "machine:  $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load at start $(load)"
echo "logs:     $logs"
echo

# Empty config file: ansible-core's defaults, whatever ansible.cfg lies around.
: > "$work/ansible-default.cfg"

# --- one fresh fleet and every tool's inputs for it --------------------------
fresh_fleet() { # N
    bash "$FLEET" stop "$fleet" >/dev/null 2>&1 || true
    bash "$FLEET" start "$fleet" "$1" --owner-pid $$ >"$work/fleet-start.log" 2>&1 ||
        { cat "$work/fleet-start.log" >&2; echo "run.sh: the fleet did not start" >&2; exit 1; }
    # shellcheck disable=SC1091
    . "$fleet/fleet.env"
    # maestro's SoT and home, as bench/install.sh builds them
    home=$work/home; rm -rf "$home" "$work/sot" "$work/scripts" "$work/inv"; mkdir -p "$home/.ssh" "$work/sot"
    cp "$fleet/id_ed25519" "$fleet/known_hosts" "$home/.ssh/"
    printf '[maestro]\nname = "bench"\n\n[connection]\nport = %s\n\n[paths]\nprofiles = "%s"\nplaybooks = "%s"\nhardening = "%s"\n' \
        "$FLEET_PORT" "$REPO/profiles" "$REPO/playbooks" "$REPO/hardening" > "$work/sot/maestro.toml"
    printf '[group.fleet]\n' > "$work/sot/groups.toml"
    cp "$fleet/nodes.toml" "$work/sot/nodes.toml"
    HOME=$home "$M" --sot "$work/sot" install --profile user --emit-scripts "$work/scripts" >"$work/emit.log" 2>&1 ||
        { cat "$work/emit.log" >&2; exit 1; }
    "$PY" "$HERE/inventory.py" "$fleet" "$work/inv"
    # Ansible/pyinfra: a fresh controller home per fleet (ControlPersist
    # sockets, ~/.ansible), so no state crosses fleets or tools.
    rm -rf "$work/chome"; mkdir -p "$work/chome"
}

# Both bare-ssh baselines use the key exchange maestro negotiates.
KEX=curve25519-sha256
# The hand-written script, with the launcher file pasted in.
awk -v f="$REPO/playbooks/files/maestro-runtime.sh" '$0 == "@LAUNCHER@" { while ((getline l < f) > 0) print l; next } { print }' \
    "$HERE/handwritten.sh" >"$work/handwritten.sh"
# The tags handwritten.sh renders, as tests/fleet/fleet.sh gives them: odd nodes eu-west/eu, even us-east/us.
hand_env() { # NODE
    local i=${1#n}; i=$((10#$i))
    if [ $((i % 2)) = 1 ]; then echo "NODE=$1 REGION=eu-west JURISDICTION=eu"; else echo "NODE=$1 REGION=us-east JURISDICTION=us"; fi
}

# run_TOOL N LOG: one run, output to LOG; the exit status is the tool's.
run_maestro() {
    HOME=$home "$M" --sot "$work/sot" --db "$work/runs.db" install --profile user --yes --forks "$1" >"$2" 2>&1
}
run_ssh() {
    local n rc=0 pids=()
    mkdir -p "$2.d"
    for n in $(awk '{print $1}' "$fleet/nodes.tsv"); do
        ssh -F "$fleet/ssh_config" -o KexAlgorithms=$KEX "$n" "sh -c 'eval \"\$(cat)\"'" < "$work/scripts/$n.sh" >"$2.d/$n.out" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    echo "exit statuses: $rc" >"$2"
    return "$rc"
}
run_sh() {
    local n rc=0 pids=()
    mkdir -p "$2.d"
    for n in $(awk '{print $1}' "$fleet/nodes.tsv"); do
        ssh -F "$fleet/ssh_config" -o KexAlgorithms=$KEX "$n" "$(hand_env "$n") sh -s" < "$work/handwritten.sh" >"$2.d/$n.out" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    echo "exit statuses: $rc" >"$2"
    return "$rc"
}
ansible_run() { # CONFIG N LOG
    (cd "$work" && HOME=$work/chome ANSIBLE_CONFIG=$1 ANSIBLE_FORCE_COLOR=0 \
        "$VENV/bin/ansible-playbook" -i "$work/inv/hosts.ini" -f "$2" "$HERE/ansible/agent-runtime.yml") >"$3" 2>&1
}
run_ansible() { ansible_run "$work/ansible-default.cfg" "$1" "$2"; }
run_ansible-tuned() { ansible_run "$HERE/ansible/tuned.cfg" "$1" "$2"; }
run_pyinfra() {
    (cd "$work" && HOME=$work/chome "$VENV/bin/pyinfra" -y --parallel "$1" \
        "$work/inv/inventory.py" "$HERE/pyinfra/deploy.py") >"$2" 2>&1
}

# check_TOOL N LOG PHASE: did the run succeed on every node; on the no-change
# run (PHASE=2), did it report no change? Prints the reason when not.
check_maestro() {
    grep -q "RECAP.*: ok=$1 failed=0 unreachable=0 timed_out=0 cancelled=0" "$2" || { echo "not every node ok"; return 1; }
    [ "$3" = 1 ] || [ "$(grep -cE '^  n[0-9]+ +ok +ok=[0-9]+ changed=0 ' "$2")" = "$1" ] || { echo "changes reported"; return 1; }
}
check_ssh() {
    local f ok=0 changed=0
    for f in "$2".d/*.out; do
        grep -qa $'^\036M[0-9a-f]* done ok$' "$f" && ok=$((ok + 1))
        changed=$((changed + $(grep -caE $'^\036M[0-9a-f]* end [0-9]+ changed' "$f" || true)))
    done
    [ "$ok" = "$1" ] || { echo "$ok of $1 scripts ended with done ok"; return 1; }
    [ "$3" = 1 ] || [ "$changed" = 0 ] || { echo "$changed changed tasks"; return 1; }
}
check_sh() {
    local f ok=0
    for f in "$2".d/*.out; do grep -q '^handwritten: done$' "$f" && ok=$((ok + 1)); done
    [ "$ok" = "$1" ] || { echo "$ok of $1 scripts finished"; return 1; }
}
check_ansible() {
    local hosts
    hosts=$(grep -cE '^n[0-9]+ +: ok=[0-9]+ +changed=[0-9]+ +unreachable=0 +failed=0 ' "$2" || true)
    [ "$hosts" = "$1" ] || { echo "$hosts of $1 hosts ok in the recap"; return 1; }
    [ "$3" = 1 ] || [ "$(grep -cE '^n[0-9]+ +: ok=[0-9]+ +changed=0 ' "$2")" = "$1" ] || { echo "changes reported"; return 1; }
}
check_ansible-tuned() { check_ansible "$@"; }
check_pyinfra() {
    # Grand total row: Operation | Hosts | Success (changed) | Error | No Change
    local total
    total=$(grep -a 'Grand total' "$2" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
    [ -n "$total" ] || { echo "no results table"; return 1; }
    # shellcheck disable=SC2086
    set -- "$1" "$2" "$3" $total   # $4 $5 = Grand total, $6 hosts, $7 changed, $8 errors, $9 no change
    [ "$8" = - ] || { echo "errors: $8"; return 1; }
    [ "$3" = 1 ] || [ "$7" = - ] || { echo "$7 operations changed something"; return 1; }
}

# --- equivalence: every tool leaves the nodes in the same state --------------
node_state() { # NODE: files, modes, owners, content, user, the running service
    bash "$FLEET" node-exec "$fleet" "$1" -- sh -c '
        find /opt/maestro /var/log/maestro /var/lib/maestro /etc/logrotate.d/maestro-runtime \
            /etc/systemd/system/maestro-runtime.service /run/maestro -printf "%p %y %m %u:%g\n" | sort
        stat -c "%n %F %a %U:%G" /etc/systemd/system
        find /opt/maestro /etc/logrotate.d/maestro-runtime /etc/systemd/system/maestro-runtime.service \
            -type f -exec sha256sum {} + | sort -k2
        getent passwd maestro | cut -d: -f1,5-; getent group maestro | cut -d: -f1,4
        grep -qE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$" /var/lib/maestro/installed-at && echo "installed-at: a date"
        sed -n "1s/^[^ ]* /<time> /p" /var/log/maestro/runtime.log
        { read -r pid; read -r start; } </run/maestro/maestro-runtime.pid
        kill -0 "$pid" && echo "pidfile: a live process of $(stat -c %U /proc/$pid): $(tr "\0" " " </proc/$pid/cmdline)"
        set -- $(sed "s/.*) //" /proc/$pid/stat); [ "${20}" = "$start" ] && echo "pidfile: its start time"
        # The runtime: one sh -c wrapper (the pidfile names it) and one
        # launcher script under it, both as the service user.
        ns=$(readlink /proc/self/ns/mnt); w=0; u=0
        for p in /proc/[0-9]*; do
            [ "$(readlink $p/ns/mnt 2>/dev/null)" = "$ns" ] || continue
            case "$(tr "\0" " " <$p/cmdline 2>/dev/null)" in
                "sh -c /opt/maestro/bin/maestro-runtime ") w=$((w + 1)) ;;
                "/bin/sh /opt/maestro/bin/maestro-runtime ") u=$((u + 1)) ;;
            esac
        done
        echo "runtime: $w sh -c wrapper(s), $u launcher script(s)"'
}
equivalence() {
    local tool ref="" rc=0
    echo "equivalence (2-node fleet; node state after first + no-change run, compared to maestro's;"
    echo "then \`maestro install --check\` on those nodes must report changed=0):"
    for tool in maestro $TOOLS; do
        [ "$tool" != maestro ] || [ -z "$ref" ] || continue
        fresh_fleet 2
        for phase in 1 2; do
            "run_$tool" 2 "$logs/equiv-$tool-$phase.log" && why=$("check_$tool" 2 "$logs/equiv-$tool-$phase.log" "$phase") ||
                { echo "  $tool: FAILED (run $phase; ${why:-exit status}; log $logs/equiv-$tool-$phase.log)"; rc=1; continue 2; }
        done
        { node_state n01; node_state n02; } >"$logs/equiv-$tool.state" 2>&1
        HOME=$home "$M" --sot "$work/sot" --db "$work/runs.db" install --profile user --check >"$logs/equiv-$tool-check.log" 2>&1 || true
        local verdict=same
        if [ -z "$ref" ]; then ref=$logs/equiv-$tool.state; verdict="reference"
        elif ! diff -u "$ref" "$logs/equiv-$tool.state" >"$logs/equiv-$tool.diff"; then verdict="DIFFERENT (see $logs/equiv-$tool.diff)"; rc=1; fi
        local chk
        chk=$(grep -cE '^  n0[12] +ok +ok=[0-9]+ changed=0 ' "$logs/equiv-$tool-check.log" || true)
        [ "$chk" = 2 ] || { verdict="$verdict; maestro --check: changes (see $logs/equiv-$tool-check.log)"; rc=1; }
        printf '  %-14s %s\n' "$tool" "$verdict"
    done
    [ "$rc" = 0 ] && echo "  node state: $(grep -c . "$ref") lines, identical for every tool (reference: $ref)"
    echo
    return 0
}
[ "$EQUIV" = 0 ] || equivalence

# --- forks per node ---------------------------------------------------------
# Processes each node script creates (forks.sh: strace -f on a test node).
forks() {
    command -v strace >/dev/null || { echo "forks per node: not measured (no strace; apt-get install strace)"; echo; return 0; }
    fresh_fleet 2
    local m1 m2 h1 h2 he
    m1=$(bash "$HERE/forks.sh" "$fleet" n01 "$work/scripts/n01.sh")
    m2=$(bash "$HERE/forks.sh" "$fleet" n01 "$work/scripts/n01.sh")
    he=$(hand_env n02)
    h1=$(bash "$HERE/forks.sh" "$fleet" n02 "$work/handwritten.sh" "env $he sh -s")
    h2=$(bash "$HERE/forks.sh" "$fleet" n02 "$work/handwritten.sh" "env $he sh -s")
    echo "forks per node (agent-runtime install; strace -f on a test node; the service it starts not counted):"
    printf '  %-36s first %4s   no-change %4s   (target <= 60 / <= 30)\n' "maestro's compiled script" "$m1" "$m2"
    printf '  %-36s first %4s   no-change %4s\n' "hand-written sh script" "$h1" "$h2"
    echo
}
[ "${FORKS:-1}" = 0 ] || forks

# --- the benchmark ------------------------------------------------------------
stats() { # FILE -> "median min max" or "FAILED"
    [ -s "$1" ] || { echo "- - -"; return; }
    sort -n "$1" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%d %d %d", m, a[1], a[NR]}'
}
label() {
    case $1 in
        maestro) echo "maestro install --forks $2" ;;
        ssh) echo "bare parallel OpenSSH, same script" ;;
        sh) echo "bare parallel OpenSSH, hand-written sh" ;;
        ansible) echo "ansible-core default (forks $2)" ;;
        ansible-tuned) echo "ansible-core tuned (forks $2)" ;;
        pyinfra) echo "pyinfra --parallel $2" ;;
    esac
}
for N in $SIZES; do
    reps_var=REPS_$N
    reps=${!reps_var:-$REPS}
    load_start=$(load); t_start=$(now)
    echo "== $N nodes, $reps repetition(s); load at start $load_start"
    for tool in $TOOLS; do : > "$work/t-$N-$tool-1"; : > "$work/t-$N-$tool-2"; : > "$work/f-$N-$tool"; done
    for rep in $(seq "$reps"); do
        for tool in $TOOLS; do
            fresh_fleet "$N"
            for phase in 1 2; do
                log=$logs/$N-$tool-$rep-$phase.log
                t0=$(now); rc=0; "run_$tool" "$N" "$log" || rc=$?; t1=$(now)
                why=""
                if [ "$rc" != 0 ]; then why="exit status $rc"
                elif ! why=$("check_$tool" "$N" "$log" "$phase"); then :
                elif [ "$phase" = 1 ] && ! bash "$FLEET" node-exec "$fleet" n01 -- test -f /opt/maestro/etc/runtime.toml; then
                    why="no /opt/maestro/etc/runtime.toml on n01"
                else why=""; fi
                if [ -n "$why" ]; then
                    echo "  $tool rep $rep run $phase: FAILED ($why; log $log)"
                    echo "run $phase rep $rep: $why; log $log" >> "$work/f-$N-$tool"
                    [ "$phase" = 2 ] || break
                else
                    ms "$t0" "$t1" >> "$work/t-$N-$tool-$phase"
                    printf '  %-14s rep %s run %s: %6s ms   (load %s)\n' "$tool" "$rep" "$phase" "$(ms "$t0" "$t1")" "$(load)"
                fi
            done
        done
    done
    bash "$FLEET" stop "$fleet" >/dev/null 2>&1 || true
    load_end=$(load)
    read -r mm1 _ _ <<<"$(stats "$work/t-$N-maestro-1")"
    read -r mm2 _ _ <<<"$(stats "$work/t-$N-maestro-2")"
    echo
    echo "agent-runtime install (20 tasks + handler) on $N real sshd nodes, $reps repetition(s), ms"
    echo "$(nproc) cores; load at start $load_start, at end $load_end; $(( ($(now) - t_start) / 1000000000 ))s in all"
    printf '  %-36s | %7s %7s %7s | %7s %7s %7s | %8s %8s\n' "tool" "first" "min" "max" "no-chg" "min" "max" "x maestro" "x maestro"
    printf '  %-36s | %7s %7s %7s | %7s %7s %7s | %8s %8s\n' "" "median" "" "" "median" "" "" "first" "no-chg"
    for tool in $TOOLS; do
        read -r a1 b1 c1 <<<"$(stats "$work/t-$N-$tool-1")"
        read -r a2 b2 c2 <<<"$(stats "$work/t-$N-$tool-2")"
        r1=$(awk -v a="$a1" -v m="${mm1:--}" 'BEGIN {print (a == "-" || m == "-" || m == 0) ? "-" : sprintf("%.2f", a / m)}')
        r2=$(awk -v a="$a2" -v m="${mm2:--}" 'BEGIN {print (a == "-" || m == "-" || m == 0) ? "-" : sprintf("%.2f", a / m)}')
        printf '  %-36s | %7s %7s %7s | %7s %7s %7s | %8s %8s\n' "$(label "$tool" "$N")" "$a1" "$b1" "$c1" "$a2" "$b2" "$c2" "$r1" "$r2"
        if [ -s "$work/f-$N-$tool" ]; then sed 's/^/      FAILED: /' "$work/f-$N-$tool"; fi
    done
    # The issue's targets, reported, not asserted.
    target() { # TOOL DESC FACTOR
        local t1 t2
        read -r t1 _ _ <<<"$(stats "$work/t-$N-$1-1")"; read -r t2 _ _ <<<"$(stats "$work/t-$N-$1-2")"
        [ "$t1" != - ] && [ -n "$mm1" ] && [ "$mm1" != - ] || { printf '  target maestro <= %s: not measured\n' "$2"; return; }
        awk -v m1="$mm1" -v m2="$mm2" -v a="$t1" -v b="$t2" -v f="$3" -v d="$2" 'BEGIN {
            l1 = a * f; l2 = b * f
            printf "  target maestro <= %-22s first %s (%.0f vs limit %.0f ms), no-change %s (%.0f vs limit %.0f ms)\n", d ":",
                (m1 <= l1) ? "met" : sprintf("MISSED by %.2fx", m1 / l1), m1, l1,
                (m2 <= l2) ? "met" : sprintf("MISSED by %.2fx", m2 / l2), m2, l2 }'
    }
    echo
    [[ " $TOOLS " != *" ssh "* ]] || target ssh "1.0x bare OpenSSH" 1
    [[ " $TOOLS " != *" sh "* ]] || target sh "1.0x hand-written sh" 1
    [[ " $TOOLS " != *" ansible-tuned "* ]] || target ansible-tuned "1/40 ansible tuned" 0.025
    [[ " $TOOLS " != *" pyinfra "* ]] || target pyinfra "1/5 pyinfra" 0.2
    echo
done
echo "versions: $v_maestro; $v_ansible; pyinfra $v_pyinfra; $v_ssh"
echo "load at end $(load); logs in $logs"
