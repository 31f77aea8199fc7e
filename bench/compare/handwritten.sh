#!/bin/sh
# The agent-runtime install written by hand as plain POSIX sh: the same steps
# as playbooks/agent-runtime.toml (as `maestro install --profile user` runs
# it), done unconditionally — no check before a write, no report, no check
# mode. The baseline maestro's compiled script is measured against in
# bench/compare/run.sh, sent as `ssh node 'NODE=.. REGION=.. JURISDICTION=.. sh -s' < this`.
# run.sh replaces the @LAUNCHER@ line with playbooks/files/maestro-runtime.sh.
set -e
umask 022
root=/opt/maestro log=/var/log/maestro state=/var/lib/maestro user=maestro

getent group $user >/dev/null || groupadd -r $user
id -u $user >/dev/null 2>&1 || useradd -M -r -g $user -d $root -s /bin/false $user

mkdir -p $root $root/bin $root/etc $root/etc/agents.d $root/agents $root/run $log $state
chmod 0755 $root $root/bin $root/agents $root/run
chmod 0750 $root/etc $root/etc/agents.d $log $state
chown root:root $root $root/bin
chown root:$user $root/etc $root/etc/agents.d
chown $user:$user $root/agents $root/run $log $state

cat >$root/bin/maestro-runtime <<'EOF'
@LAUNCHER@
EOF
chmod 0755 $root/bin/maestro-runtime

cat >$root/etc/runtime.toml <<EOF
# Rendered by maestro for $NODE; edits here are overwritten.
node = "$NODE"
region = "$REGION"
jurisdiction = "$JURISDICTION"
runtime_root = "$root"
log_dir = "$log"
state_dir = "$state"
service_user = "$user"
heartbeat_seconds = "30"
EOF
chmod 0640 $root/etc/runtime.toml
chown root:$user $root/etc/runtime.toml

printf 'MAESTRO_RUNTIME_ROOT=%s\nMAESTRO_LOG_DIR=%s\n' $root $log >$root/etc/runtime.env
printf 'runtime 1.0.0\nlauncher sha256 %s\nnode %s\n' \
    9e4661d0ac5d8ca28d3b1759e35f4d97517c1b23aa48c5ea430f2411a01b8d09 "$NODE" >$root/etc/manifest
echo "9e4661d0ac5d8ca28d3b1759e35f4d97517c1b23aa48c5ea430f2411a01b8d09  $root/bin/maestro-runtime" | sha256sum -c --quiet

cat >/etc/logrotate.d/maestro-runtime <<EOF
$log/*.log {
    weekly
    rotate 8
    compress
    missingok
    notifempty
    copytruncate
}
EOF

mkdir -p /etc/systemd/system
cat >/etc/systemd/system/maestro-runtime.service <<EOF
[Unit]
Description=maestro agent runtime
After=network-online.target

[Service]
User=$user
EnvironmentFile=-$root/etc/runtime.env
ExecStart=$root/bin/maestro-runtime
Restart=on-failure
NoNewPrivileges=yes
ProtectSystem=full

[Install]
WantedBy=multi-user.target
EOF

[ -e $state/installed-at ] || date -u +%Y-%m-%dT%H:%M:%SZ >$state/installed-at

# The service, as maestro's module runs it without systemd: its own session,
# as the service user, PID and start time in a root-only pidfile.
pidfile=/run/maestro/maestro-runtime.pid
mkdir -p -m 0755 /run/maestro
pid= start=
[ -f $pidfile ] && { read -r pid; read -r start; } <$pidfile
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    setsid setpriv --reuid $user --regid $user --init-groups -- sh -c $root/bin/maestro-runtime </dev/null >/dev/null 2>&1 &
    pid=$!
    read -r st </proc/$pid/stat
    set -- ${st##*) }
    shift 19
    printf '%s\n%s\n' "$pid" "$1" >$pidfile
fi
echo "handwritten: done"
