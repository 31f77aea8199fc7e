#!/usr/bin/env bash
# Forks per node: runs a node script on one real test node under
# `strace -f` (the node's own process tree, from the `sh -c 'eval "$(cat)"'`
# that maestro's launcher starts) and counts the processes it creates:
# successful fork, vfork, clone and clone3 calls that are not threads. The
# service the script leaves running (everything under the `setsid` it
# execs) is the service's own work and is not counted.
#
#   bash bench/compare/forks.sh FLEET_DIR NODE SCRIPT [LAUNCHER]
# LAUNCHER: the command that reads the script on stdin (default maestro's,
# `sh -c 'eval "$(cat)"'`; the hand-written baseline uses `sh -s`).
# Prints the number of forks. Needs strace on the machine (apt-get install strace).
set -euo pipefail
fleet=$1 node=$2 script=$3
if [ $# -ge 4 ]; then launcher=$4; else launcher='sh -c '\''eval "$(cat)"'\'; fi
FLEET=$(dirname "$0")/../../tests/fleet/fleet.sh
command -v strace >/dev/null || { echo "forks.sh: needs strace (apt-get install strace)" >&2; exit 1; }
# The fleet directory is visible inside the node at the same path (its /tmp is private).
log=$(mktemp "$fleet/forks.XXXXXX")
# strace follows the service too, and would wait for it forever: stop tracing
# once the script's own process has exited.
bash "$FLEET" node-exec "$fleet" "$node" -- sh ${FORKS_TRACE:+-x} -c "
    exec 3<&0
    strace -f -qq -e trace=process,setsid -o $log $launcher <&3 >/dev/null 2>&1 &
    s=\$!
    i=0
    while [ \$i -lt 600 ]; do
        first=\$(head -n 1 $log 2>/dev/null | cut -d' ' -f1)
        [ -n \"\$first\" ] && grep -q \"^\$first  *exit_group\" $log && break
        sleep 0.1; i=\$((i + 1))
    done
    kill -KILL \$s 2>/dev/null; wait \$s 2>/dev/null; true" <"$script"
awk '
    NR == 1 { root = $1 }
    # a process that called setsid is the detached service: its subtree is not ours
    / setsid\(\) += [0-9]/ { svc[$1] = 1 }
    # a call strace saw in one line, or begun ("<unfinished ...>") and resumed
    /^[0-9]+ +(clone|clone3|fork|vfork)\(/ {
        thread[$1] = ($0 ~ /CLONE_THREAD/)
        if ($0 !~ / = [0-9]+$/) next
    }
    /^[0-9]+ +<\.\.\. (clone|clone3|fork|vfork) resumed>/ && $0 !~ / = [0-9]+$/ { next }
    /^[0-9]+ +((clone|clone3|fork|vfork)\(|<\.\.\. (clone|clone3|fork|vfork) resumed>)/ {
        if (thread[$1]) next
        child = $NF; parent[child] = $1; forks[++n] = child
    }
    END {
        c = 0
        for (i = 1; i <= n; i++) {
            p = parent[forks[i]]; skip = 0
            while (p != "") { if (p in svc) { skip = 1; break }; p = parent[p] }
            if (!skip) c++
        }
        print c
    }' "$log"
[ -n "${KEEP_LOG:-}" ] && echo "log: $log" >&2 || rm -f "$log"
