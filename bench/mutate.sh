#!/usr/bin/env bash
# Mutation soak: feed each parser maestro runs on operator- or node-supplied
# bytes (SoT loader, playbook parser, hardening baseline loader, task-marker
# parser) randomly damaged copies of real inputs for SECONDS each, one target
# at a time, and report cases run and panics (must be 0).
#
#   bash bench/mutate.sh                      # 10 minutes per target
#   SECONDS_PER_TARGET=60 bash bench/mutate.sh
#   TARGETS="sot_loader playbook_parser" bash bench/mutate.sh
#
# It uses the test (debug) profile on purpose: overflow checks and debug
# assertions turn silent arithmetic bugs into panics the soak can find.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-600}
BATCH=${BATCH:-500}
TARGETS=${TARGETS:-"sot_loader playbook_parser baseline_loader task_marker_parser"}

cargo test --quiet --test mutation --no-run
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
failed=0
for t in $TARGETS; do
    log=$(mktemp /tmp/maestro-mutate.XXXXXX)
    if MAESTRO_MUTATION_SECONDS=$SECONDS_PER_TARGET MAESTRO_MUTATION_CASES=$BATCH \
        cargo test --quiet --test mutation -- --exact "the_${t}_never_panics" --nocapture \
        >"$log" 2>&1; then
        echo "$t: $(grep -o 'mutation: .*' "$log")"
    else
        failed=1
        echo "$t: PANIC (full output in $log)"
        grep -A30 'minimal failing input' "$log" || tail -30 "$log"
        continue
    fi
    rm -f "$log"
done
exit $failed
