#!/bin/sh
# maestro agent runtime: supervises the agents defined in etc/agents.d and
# writes a heartbeat to its log. Installed by playbooks/agent-runtime.toml.
set -u
root=${MAESTRO_RUNTIME_ROOT:-/opt/maestro}
[ -r "$root/etc/runtime.env" ] && . "$root/etc/runtime.env"
log=${MAESTRO_LOG_DIR:-/var/log/maestro}/runtime.log
interval=$(sed -n 's/^heartbeat_seconds *= *"\{0,1\}\([0-9]*\)"\{0,1\}$/\1/p' "$root/etc/runtime.toml" 2>/dev/null)
echo "$(date -u +%FT%TZ) runtime started, root $root" >>"$log"
while :; do
    agents=$(ls "$root/etc/agents.d" 2>/dev/null | grep -c '\.toml$')
    echo "$(date -u +%FT%TZ) heartbeat agents=$agents" >>"$log"
    sleep "${interval:-30}"
done
