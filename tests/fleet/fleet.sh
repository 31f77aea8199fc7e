#!/usr/bin/env bash
# tests/fleet/fleet.sh - a fleet of real, isolated OpenSSH test nodes on this machine.
#
# Every node is its own /usr/sbin/sshd running in its own private mount (and UTS)
# namespace, listening on 127.0.10.<i>. Inside the namespace /etc, /opt, /var, /srv,
# /home and /root are overlays whose upper layer lives in DIR/nodes/<name>/upper, and
# /tmp and /run are private tmpfs mounts, so whatever a test does on a node stays on
# that node. See tests/fleet/README.md for the interface.
set -euo pipefail

PROG=fleet.sh
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
SSHD=/usr/sbin/sshd
NODE_SSHD_CONFIG=/etc/ssh/sshd_config   # the standard path, so hardening edits the file sshd reads
NET_PREFIX=${FLEET_NET_PREFIX:-127.0.10}   # nodes listen on $NET_PREFIX.1 .. .K
[[ $NET_PREFIX =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "fleet.sh: FLEET_NET_PREFIX must look like 127.X.Y" >&2; exit 1; }
OVERLAY_DIRS=(etc opt var srv home root)
START_TIMEOUT=${FLEET_START_TIMEOUT:-10}   # seconds a node gets to accept connections
STOP_GRACE=${FLEET_STOP_GRACE:-2}          # seconds between SIGTERM and SIGKILL
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

DIR=""
NODES_DIR=""
OVERLAY_ORDER=""
SELF_NS=""

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
info() { printf '%s: %s\n' "$PROG" "$*" >&2; }

usage() {
    cat <<EOF
usage: $PROG COMMAND DIR [ARGS]

  start DIR K [--owner-pid PID]  start K nodes n01..nK on 127.0.10.1..K (port \$FLEET_PORT,
                                 default 22, falling back to 2222 if 22 is taken)
  stop DIR                       stop every node of the fleet (idempotent)
  status DIR                     one line per node: name address:port pid up|down
  stop-node DIR N                stop one node (N = index or name); its state is kept
  start-node DIR N               start a stopped node again (same host key, same files)
  kill-node DIR N                SIGKILL everything on the node at once (a crash)
  rekey-node DIR N               restart the node with a NEW host key, leaving
                                 DIR/known_hosts alone; prints the new fingerprint
  node-exec DIR N -- CMD...      run CMD inside the node's namespaces

Outputs in DIR: id_ed25519(.pub), known_hosts, ssh_config, nodes.toml, fleet.env, nodes.tsv.
Environment: FLEET_PORT, FLEET_NET_PREFIX (default 127.0.10), FLEET_START_TIMEOUT (default 10),
FLEET_STOP_GRACE (default 2).
Needs root (mount namespaces, overlay mounts).
EOF
}

# ---------------------------------------------------------------------------
# Script run inside each node's fresh mount+UTS namespace (POSIX sh), before it
# execs sshd. Arguments: DIR NAME ADDRESS OVERLAY_ORDER.
# shellcheck disable=SC2016  # expanded by the inner sh, not here
NODE_INIT='
set -eu
D=$1 N=$2 A=$3 ORDER=$4
ND=$D/nodes/$N
# Keep a handle on the state directory: the mounts below may cover its path.
exec 9<"$D"
for d in $ORDER; do
    i=0
    # Retry: after a stop/kill the old overlay may take a moment to be released.
    until mount -t overlay "fleet-$N-$d" \
        -o "lowerdir=/$d,upperdir=$ND/upper/$d,workdir=$ND/work/$d" "/$d"; do
        i=$((i + 1))
        if [ "$i" -ge 50 ]; then echo "fleet-node $N: cannot mount overlay on /$d" >&2; exit 1; fi
        sleep 0.1
    done
done
mount -t tmpfs -o mode=1777,nosuid,nodev "fleet-$N-tmp" /tmp
mount -t tmpfs -o mode=0755,nosuid,nodev "fleet-$N-run" /run
mkdir -m 0755 /run/sshd
mkdir -m 1777 /run/lock
ln -s /dev/shm /run/shm
# Make the real state directory visible again at its own path (for PidFile, -E log).
mkdir -p "$D"
mount --no-canonicalize --bind /proc/self/fd/9 "$D"
exec 9<&-

printf "%s\n" "$N" >/proc/sys/kernel/hostname
printf "%s\n" "$N" >/etc/hostname
grep -q "[[:space:]]$N\$" /etc/hosts 2>/dev/null || printf "\n%s\t%s\n" "$A" "$N" >>/etc/hosts
if [ -e /etc/machine-id ] && [ ! -e "$ND/upper/etc/machine-id" ]; then
    od -An -N16 -tx1 /dev/urandom | tr -d " \n" >/etc/machine-id
    echo >>/etc/machine-id
fi

install -d -m 0755 /etc/ssh /etc/ssh/authorized_keys
install -m 0600 "$ND/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$ND/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -m 0644 "$ND/sshd_config" '"$NODE_SSHD_CONFIG"'

if ! grep -q "^op:" /etc/passwd; then
    useradd --create-home --home-dir /home/op --shell /bin/sh op
fi
# With UsePAM no, sshd refuses accounts whose password field starts with "!".
usermod -p "*" op
case "$(awk -F: "\$1 == \"root\" { print \$2 }" /etc/shadow)" in
    "!"*) usermod -p "*" root ;;
esac
install -d -m 0750 /etc/sudoers.d
printf "op ALL=(ALL) NOPASSWD:ALL\n" >/etc/sudoers.d/op
chmod 0440 /etc/sudoers.d/op
install -m 0644 "$D/id_ed25519.pub" /etc/ssh/authorized_keys/root
install -m 0644 "$D/id_ed25519.pub" /etc/ssh/authorized_keys/op

cd /
exec '"$SSHD"' -D -e -f '"$NODE_SSHD_CONFIG"' -E "$ND/sshd.log"
'

# ---------------------------------------------------------------------------
# helpers

now_us() { local t=${EPOCHREALTIME//[.,]/}; printf '%s' "$t"; }

# The fields of /proc/PID/stat after "comm", or failure if PID is gone.
proc_stat_rest() {
    local s
    { s=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
    printf '%s' "${s##*) }"
}

# True when PID exists and is not a zombie.
proc_alive() {
    local r
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    r=$(proc_stat_rest "$1") || return 1
    [[ ${r%% *} != Z ]]
}

# Prints the start time (clock ticks since boot) of a live PID: identifies it across PID reuse.
proc_starttime() {
    local r f
    proc_alive "$1" || return 1
    r=$(proc_stat_rest "$1") || return 1
    read -r -a f <<<"$r"
    printf '%s\n' "${f[19]}"
}

proc_cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# DIR validation and canonicalisation. $2 = "create" to create it.
set_dir() {
    local d=${1:-}
    [[ -n $d ]] || die "missing state directory argument (see: $PROG help)"
    if [[ ${2:-} == create ]]; then
        mkdir -p -- "$d" || die "cannot create state directory $d"
    fi
    [[ -d $d ]] || die "state directory $d does not exist"
    DIR=$(cd -- "$d" && pwd -P)
    [[ $DIR =~ ^/[A-Za-z0-9._/@+-]+$ ]] ||
        die "state directory '$DIR' must be a path of letters, digits and ._/@+- only (it goes into overlay mount options and ssh_config)"
    case $DIR in
        /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) die "state directory '$DIR' cannot live under /proc, /sys or /dev" ;;
    esac
    NODES_DIR=$DIR/nodes
}

require_fleet() {
    [[ -f $DIR/fleet.env && -d $NODES_DIR ]] || die "no fleet in $DIR (run: $PROG start $DIR K)"
}

lock_dir() {
    exec 8>"$DIR/.lock"
    flock -w 120 8 || die "timed out waiting for the lock $DIR/.lock (another $PROG running?)"
}

preflight() {
    [[ $EUID -eq 0 ]] ||
        die "must run as root: it needs root for mount namespaces and overlay mounts (try: sudo bash $SELF ...)"
    [[ -x $SSHD ]] || die "$SSHD not found; install the OpenSSH server with: apt-get install -y openssh-server"
    local t missing=()
    for t in unshare nsenter setsid ssh ssh-keygen ss useradd usermod mount flock find awk tail; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ((${#missing[@]} == 0)) ||
        die "missing tools: ${missing[*]} (apt-get install -y openssh-client util-linux iproute2 passwd findutils)"
    [[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "FLEET_START_TIMEOUT='$START_TIMEOUT' must be whole seconds"
    [[ $STOP_GRACE =~ ^[0-9]+$ ]] || die "FLEET_STOP_GRACE='$STOP_GRACE' must be whole seconds"
    SELF_NS=$(readlink /proc/$$/ns/mnt)
}

node_names() {
    local f
    for f in "$NODES_DIR"/n*/node.info; do
        [[ -e $f ]] || continue
        f=${f%/node.info}
        printf '%s\n' "${f##*/}"
    done
}

# N (index, nNN or name) -> node name
resolve_node() {
    local arg=${1:-} n want
    [[ -n $arg ]] || die "missing node argument (index like 3 or name like n03)"
    if [[ $arg =~ ^n?([0-9]+)$ ]]; then
        want=$((10#${BASH_REMATCH[1]}))
        for n in $(node_names); do
            if ((10#${n#n} == want)); then
                printf '%s\n' "$n"
                return 0
            fi
        done
    elif [[ -f $NODES_DIR/$arg/node.info ]]; then
        printf '%s\n' "$arg"
        return 0
    fi
    die "no node '$arg' in $DIR"
}

# Sets N_INDEX N_NAME N_ADDR N_PORT N_DIR for a node name.
load_node() {
    N_DIR=$NODES_DIR/$1
    [[ -f $N_DIR/node.info ]] || die "node $1 has no state in $N_DIR"
    read -r N_INDEX N_NAME N_ADDR N_PORT <"$N_DIR/node.info"
}

# The sshd PID of a node if it is up, else failure.
node_up_pid() {
    local nd=$NODES_DIR/$1 pid ns comm
    [[ -s $nd/pid && -s $nd/mntns ]] || return 1
    pid=$(<"$nd/pid")
    ns=$(<"$nd/mntns")
    proc_alive "$pid" || return 1
    [[ $(readlink "/proc/$pid/ns/mnt" 2>/dev/null) == "$ns" ]] || return 1
    { comm=$(<"/proc/$pid/comm"); } 2>/dev/null || return 1
    [[ $comm == sshd ]] || return 1
    printf '%s\n' "$pid"
}

# NS_PIDS[mnt:[inode]]="pid pid ..." for every process on the machine (except us).
declare -A NS_PIDS=()
scan_namespaces() {
    NS_PIDS=()
    local p l pid
    while read -r p l; do
        pid=${p#/proc/}
        pid=${pid%%/*}
        [[ -n $l && $pid =~ ^[0-9]+$ ]] || continue # zombies have no namespace link
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        NS_PIDS[$l]+="$pid "
    done < <(find /proc/[0-9]*/ns/mnt -maxdepth 0 -printf '%p %l\n' 2>/dev/null || true)
}

# Is namespace $1 really node $2's? Some process in it must have the node's overlays
# mounted (or be the node's init script before mounting). Guards against PID and
# namespace-inode reuse: we never signal anything that fails this.
ns_is_nodes() {
    local ns=$1 name=$2 pid
    for pid in ${NS_PIDS[$ns]:-}; do
        if grep -qF "upperdir=$NODES_DIR/$name/upper/" "/proc/$pid/mountinfo" 2>/dev/null; then
            return 0
        fi
        if [[ $(proc_cmdline "$pid") == *" fleet-node $DIR $name "* ]]; then
            return 0
        fi
    done
    return 1
}

# forget_reused_namespaces ARRAY: drop from the associative array ARRAY (namespace ->
# node name) every namespace that no longer is its node's. Once the last process of a
# node's namespace exits, the kernel gives its inode number to the next namespace
# created -- typically a node of another fleet starting while this one stops (the next
# test binary's) -- and a rescan would otherwise signal that fleet's sshd.
forget_reused_namespaces() {
    local -n map=$1
    local ns
    for ns in "${!map[@]}"; do
        [[ -z ${NS_PIDS[$ns]:-} ]] && continue
        ns_is_nodes "$ns" "${map[$ns]}" || unset "map[$ns]"
    done
}

# kill_nodes term|kill NAME... : end every process in each node's mount namespace.
kill_nodes() {
    local mode=$1
    shift
    local -A target=()
    local name nd ns pid deadline left
    scan_namespaces
    for name in "$@"; do
        nd=$NODES_DIR/$name
        ns=""
        [[ -s $nd/mntns ]] && ns=$(<"$nd/mntns")
        if [[ -z $ns && -s $nd/pid ]]; then
            pid=$(<"$nd/pid")
            ns=$(readlink "/proc/$pid/ns/mnt" 2>/dev/null || true)
            if [[ -n $ns && $ns == "$SELF_NS" ]]; then
                # Launched but not yet unshared (only during a failed start).
                if [[ $(proc_cmdline "$pid") == *" fleet-node $DIR $name "* ]]; then
                    kill -KILL "$pid" 2>/dev/null || true
                fi
                ns=""
            fi
        fi
        if [[ -n $ns && $ns != "$SELF_NS" && -n ${NS_PIDS[$ns]:-} ]]; then
            if ns_is_nodes "$ns" "$name"; then
                target[$ns]=$name
            else
                warn "node $name: processes in $ns do not look like this node's; not touching them"
            fi
        fi
    done

    if ((${#target[@]})); then
        if [[ $mode == term ]]; then
            for ns in "${!target[@]}"; do
                # shellcheck disable=SC2086  # word-split PID list
                kill -TERM ${NS_PIDS[$ns]} 2>/dev/null || true
            done
            deadline=$(($(now_us) + STOP_GRACE * 1000000))
            while :; do
                scan_namespaces
                forget_reused_namespaces target
                left=0
                for ns in "${!target[@]}"; do
                    [[ -n ${NS_PIDS[$ns]:-} ]] && left=1
                done
                ((left)) || break
                (($(now_us) < deadline)) || break
                sleep 0.1
            done
        fi
        deadline=$(($(now_us) + 5000000))
        while :; do
            scan_namespaces
            forget_reused_namespaces target
            left=0
            for ns in "${!target[@]}"; do
                if [[ -n ${NS_PIDS[$ns]:-} ]]; then
                    left=1
                    # shellcheck disable=SC2086
                    kill -KILL ${NS_PIDS[$ns]} 2>/dev/null || true
                fi
            done
            ((left)) || break
            if (($(now_us) >= deadline)); then
                for ns in "${!target[@]}"; do
                    [[ -n ${NS_PIDS[$ns]:-} ]] &&
                        warn "node ${target[$ns]}: processes still alive after SIGKILL: ${NS_PIDS[$ns]}"
                done
                break
            fi
            sleep 0.05
        done
    fi

    for name in "$@"; do
        rm -f "$NODES_DIR/$name/pid" "$NODES_DIR/$name/mntns" "$NODES_DIR/$name/sshd.pid"
    done
}

# The overlay order for the inner script: the overlaid tree that contains DIR goes
# last so the other upper dirs are still reachable when they are mounted.
overlay_order() {
    local d first=() last=()
    for d in "${OVERLAY_DIRS[@]}"; do
        if [[ $DIR == "/$d" || $DIR == "/$d/"* ]]; then last+=("$d"); else first+=("$d"); fi
    done
    printf '%s' "${first[*]} ${last[*]:-}"
}

launch_node() {
    local name=$1 d dirs=()
    load_node "$name"
    [[ -n $OVERLAY_ORDER ]] || OVERLAY_ORDER=$(overlay_order)
    rm -f "$N_DIR/pid" "$N_DIR/mntns" "$N_DIR/sshd.pid"
    for d in "${OVERLAY_DIRS[@]}"; do
        [[ -d /$d ]] || die "/$d does not exist on this machine; cannot overlay it"
        dirs+=("$N_DIR/upper/$d" "$N_DIR/work/$d")
    done
    mkdir -p "${dirs[@]}"
    printf '=== %(%F %T)T starting node %s\n' -1 "$name" >>"$N_DIR/console.log"
    setsid env -i PATH="$SAFE_PATH" LANG=C \
        unshare --mount --uts --propagation private \
        sh -c "$NODE_INIT" fleet-node "$DIR" "$name" "$N_ADDR" "$OVERLAY_ORDER" \
        </dev/null >>"$N_DIR/console.log" 2>&1 8>&- &
    printf '%s\n' "$!" >"$N_DIR/pid"
    disown "$!" # no "Killed" job notices if we have to take it down again
}

tcp_probe() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

node_failure_report() {
    local name=$1 why=$2 nd=$NODES_DIR/$1
    printf '%s: error: node %s: %s\n' "$PROG" "$name" "$why" >&2
    if [[ -s $nd/console.log ]]; then
        printf -- '--- %s (last lines)\n' "$nd/console.log" >&2
        tail -n 15 "$nd/console.log" >&2
    fi
    if [[ -s $nd/sshd.log ]]; then
        printf -- '--- %s (last lines)\n' "$nd/sshd.log" >&2
        tail -n 15 "$nd/sshd.log" >&2
    fi
}

# Wait until every named node's sshd runs in its namespace and accepts connections.
wait_nodes() {
    local -a pending=("$@") next=()
    local -a failed=()
    local deadline name nd pid spid comm ns
    deadline=$(($(now_us) + START_TIMEOUT * 1000000))
    while ((${#pending[@]})); do
        next=()
        for name in "${pending[@]}"; do
            load_node "$name"
            nd=$N_DIR
            pid=$(<"$nd/pid")
            if [[ -s $nd/sshd.pid ]]; then
                spid=$(<"$nd/sshd.pid")
                comm=""
                if [[ $spid =~ ^[0-9]+$ ]]; then
                    { comm=$(<"/proc/$spid/comm"); } 2>/dev/null || comm=""
                fi
                if [[ $comm == sshd ]] && tcp_probe "$N_ADDR" "$N_PORT" &&
                    ns=$(readlink "/proc/$spid/ns/mnt"); then
                    printf '%s\n' "$ns" >"$nd/mntns"
                    printf '%s\n' "$spid" >"$nd/pid"
                    continue
                fi
            fi
            if ! proc_alive "$pid"; then
                failed+=("$name")
                node_failure_report "$name" "exited during startup"
                continue
            fi
            next+=("$name")
        done
        pending=("${next[@]}")
        ((${#pending[@]})) || break
        if (($(now_us) >= deadline)); then
            for name in "${pending[@]}"; do
                load_node "$name"
                failed+=("$name")
                node_failure_report "$name" "not accepting connections on $N_ADDR after ${START_TIMEOUT}s"
            done
            break
        fi
        sleep 0.05
    done
    ((${#failed[@]} == 0))
}

write_tsv() {
    local name pid tmp=$DIR/.nodes.tsv.tmp
    : >"$tmp"
    for name in $(node_names); do
        load_node "$name"
        pid=$(node_up_pid "$name") || pid=-
        printf '%s\t%s\t%s\t%s\n' "$N_NAME" "$N_ADDR" "$N_PORT" "$pid" >>"$tmp"
    done
    mv -f "$tmp" "$DIR/nodes.tsv"
}

# Is something listening on $1:$2 (or on the wildcard address)?
port_taken() {
    local addr=$1 port=$2 local_addr
    while read -r _ _ _ local_addr _; do
        case $local_addr in
            "0.0.0.0:$port" | "*:$port" | "[::]:$port" | "$addr:$port" | "[::ffff:$addr]:$port") return 0 ;;
        esac
    done < <(ss -ltnH "sport = :$port" 2>/dev/null || true)
    return 1
}

choose_port() {
    local k=$1 port i
    if [[ -n ${FLEET_PORT:-} ]]; then
        if ! [[ $FLEET_PORT =~ ^[0-9]+$ ]] || ((10#$FLEET_PORT < 1 || 10#$FLEET_PORT > 65535)); then
            die "FLEET_PORT='$FLEET_PORT' is not a valid port"
        fi
        for ((i = 1; i <= k; i++)); do
            port_taken "$NET_PREFIX.$i" "$FLEET_PORT" &&
                die "port $FLEET_PORT (FLEET_PORT) is already in use on $NET_PREFIX.$i or the wildcard address"
        done
        printf '%s\n' "$FLEET_PORT"
        return
    fi
    for port in 22 2222; do
        for ((i = 1; i <= k; i++)); do
            port_taken "$NET_PREFIX.$i" "$port" && continue 2
        done
        printf '%s\n' "$port"
        return
    done
    die "ports 22 and 2222 are both in use on $NET_PREFIX.x; set FLEET_PORT to a free port"
}

write_atomic() { # write_atomic FILE  (content on stdin)
    cat >"$1.tmp"
    mv -f "$1.tmp" "$1"
}

write_outputs() {
    local port=$1 k=$2 name kt
    {
        for name in $(node_names); do
            load_node "$name"
            read -r kt key _ <"$N_DIR/ssh_host_ed25519_key.pub"
            if [[ $N_PORT == 22 ]]; then
                printf '%s %s %s\n' "$N_ADDR" "$kt" "$key"
            else
                printf '[%s]:%s %s %s\n' "$N_ADDR" "$N_PORT" "$kt" "$key"
            fi
        done
    } | write_atomic "$DIR/known_hosts"

    {
        printf '# generated by tests/fleet/fleet.sh - ssh client config for the test fleet in %s\n' "$DIR"
        for name in $(node_names); do
            load_node "$name"
            printf '\nHost %s\n' "$N_NAME"
            printf '    HostName %s\n    Port %s\n    User root\n' "$N_ADDR" "$N_PORT"
            printf '    IdentityFile %s\n    IdentitiesOnly yes\n' "$DIR/id_ed25519"
            printf '    UserKnownHostsFile %s\n    GlobalKnownHostsFile /dev/null\n' "$DIR/known_hosts"
            printf '    StrictHostKeyChecking yes\n    UpdateHostKeys no\n    BatchMode yes\n'
            printf '    ConnectTimeout 10\n'
        done
    } | write_atomic "$DIR/ssh_config"

    {
        printf '# generated by tests/fleet/fleet.sh - maestro inventory fragment for the test fleet in %s\n' "$DIR"
        for name in $(node_names); do
            load_node "$name"
            local region=eu-west juris=eu
            if ((N_INDEX % 2 == 0)); then region=us-east juris=us; fi
            printf '\n[node.%s]\n' "$N_NAME"
            printf 'address = "%s"\n' "$N_ADDR"
            printf 'port = %s\n' "$N_PORT"
            printf 'user = "root"\n'
            printf 'groups = ["fleet"]\n'
            printf 'tags = { env = "test", region = "%s", jurisdiction = "%s", pii = "none", role = "inference" }\n' \
                "$region" "$juris"
        done
    } | write_atomic "$DIR/nodes.toml"

    {
        printf '# generated by tests/fleet/fleet.sh\n'
        printf 'FLEET_DIR=%s\n' "$DIR"
        printf 'FLEET_PORT=%s\n' "$port"
        printf 'FLEET_NET_PREFIX=%s\n' "$NET_PREFIX"
        printf 'FLEET_SIZE=%s\n' "$k"
        printf 'FLEET_KEY=%s\n' "$DIR/id_ed25519"
        printf 'FLEET_KNOWN_HOSTS=%s\n' "$DIR/known_hosts"
        printf 'FLEET_SSH_CONFIG=%s\n' "$DIR/ssh_config"
        printf 'FLEET_INVENTORY=%s\n' "$DIR/nodes.toml"
    } | write_atomic "$DIR/fleet.env"
}

write_sshd_config() { # for the loaded node
    cat >"$N_DIR/sshd_config" <<EOF
# generated by tests/fleet/fleet.sh for test node $N_NAME
ListenAddress $N_ADDR:$N_PORT
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile $N_DIR/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
StrictModes no
MaxSessions 64
MaxStartups 200:30:400
Subsystem sftp internal-sftp
LogLevel INFO
PrintMotd no
PrintLastLog no
X11Forwarding no
UseDNS no
# No AcceptEnv line: the node accepts no environment variables from clients.
EOF
}

gen_host_key() { # NODE_DIR NAME
    rm -f "$1/ssh_host_ed25519_key" "$1/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "root@$2" -f "$1/ssh_host_ed25519_key" </dev/null >/dev/null
}

# Verify real logins on node $1: "ssh -F DIR/ssh_config NAME true" as root, and op + sudo.
# (One node is representative: every node is set up by the same script, and an ssh
# login costs ~0.2 s of CPU here, so checking all of a 50-node fleet would take seconds.)
verify_ssh() {
    local name=$1 log=$NODES_DIR/$1/verify.log bad=0 rootpid out
    ssh -F "$DIR/ssh_config" "$name" true </dev/null >"$log" 2>&1 8>&- &
    rootpid=$!
    if ! out=$(ssh -F "$DIR/ssh_config" -l op "$name" 'sudo -n id -u' </dev/null 2>&1 8>&-) || [[ $out != 0 ]]; then
        bad=1
        printf '%s: error: node %s: user op cannot log in or sudo: %s\n' "$PROG" "$name" "$out" >&2
    fi
    if ! wait "$rootpid"; then
        bad=1
        printf '%s: error: node %s: "ssh -F %s %s true" failed:\n' "$PROG" "$name" "$DIR/ssh_config" "$name" >&2
        cat "$log" >&2
    fi
    if ((bad)) && [[ -s $NODES_DIR/$name/sshd.log ]]; then
        printf -- '--- %s (last lines)\n' "$NODES_DIR/$name/sshd.log" >&2
        tail -n 10 "$NODES_DIR/$name/sshd.log" >&2
    fi
    ((!bad))
}

stop_watchdog() {
    local w r f
    [[ -s $DIR/watchdog.pid ]] || return 0
    w=$(<"$DIR/watchdog.pid")
    if [[ $w != "$$" ]] && proc_alive "$w" && [[ $(proc_cmdline "$w") == *" __watchdog $DIR "* ]]; then
        r=$(proc_stat_rest "$w") || r=""
        read -r -a f <<<"$r"
        if [[ ${f[2]:-} == "$w" ]]; then
            kill -TERM -- "-$w" 2>/dev/null || true   # its process group (it is a setsid leader)
        else
            kill -TERM "$w" 2>/dev/null || true
        fi
    fi
    rm -f "$DIR/watchdog.pid"
}

# ---------------------------------------------------------------------------
# commands

cmd_start() {
    local k="" owner="" arg
    set_dir "${1:-}" create
    shift
    while (($#)); do
        arg=$1
        shift
        case $arg in
            --owner-pid) (($#)) || die "--owner-pid needs a PID"; owner=$1; shift ;;
            --owner-pid=*) owner=${arg#*=} ;;
            -*) die "unknown option $arg" ;;
            *) [[ -z $k ]] || die "unexpected argument $arg"; k=$arg ;;
        esac
    done
    if ! [[ $k =~ ^[0-9]+$ ]] || ((10#$k < 1 || 10#$k > 254)); then
        die "node count K must be 1..254 (got '${k}')"
    fi
    k=$((10#$k))
    local owner_start=""
    if [[ -n $owner ]]; then
        [[ $owner =~ ^[0-9]+$ ]] || die "--owner-pid '$owner' is not a PID"
        owner_start=$(proc_starttime "$owner") || die "--owner-pid $owner: no such running process"
    fi

    local t0
    t0=$(now_us)
    lock_dir

    # Refuse to clobber a fleet that is still (partly) running in this directory.
    local name running=()
    if [[ -d $NODES_DIR ]]; then
        scan_namespaces
        for name in $(node_names); do
            if node_up_pid "$name" >/dev/null ||
                { [[ -s $NODES_DIR/$name/mntns ]] && [[ -n ${NS_PIDS[$(<"$NODES_DIR/$name/mntns")]:-} ]]; }; then
                running+=("$name")
            fi
        done
    fi
    ((${#running[@]} == 0)) ||
        die "a fleet is still running in $DIR (${running[*]}); run: $PROG stop $DIR"
    stop_watchdog

    local port width i
    port=$(choose_port "$k")
    width=2
    ((k > 99)) && width=3

    if [[ ! -s $DIR/id_ed25519 || ! -s $DIR/id_ed25519.pub ]]; then
        rm -f "$DIR/id_ed25519" "$DIR/id_ed25519.pub"
        ssh-keygen -q -t ed25519 -N '' -C "maestro-test-fleet" -f "$DIR/id_ed25519" </dev/null >/dev/null
    fi
    chmod 0600 "$DIR/id_ed25519"

    # Fresh node state: a new fleet starts from the host's files.
    rm -rf -- "$NODES_DIR" "$DIR/nodes.tsv" "$DIR/known_hosts"
    mkdir -p "$NODES_DIR"
    local -a names=() kpids=()
    for ((i = 1; i <= k; i++)); do
        name=$(printf 'n%0*d' "$width" "$i")
        names+=("$name")
        N_DIR=$NODES_DIR/$name
        mkdir -p "$N_DIR"
        printf '%s %s %s %s\n' "$i" "$name" "$NET_PREFIX.$i" "$port" >"$N_DIR/node.info"
        load_node "$name"
        write_sshd_config
        gen_host_key "$N_DIR" "$name" &
        kpids+=($!)
    done
    for i in "${kpids[@]}"; do
        wait "$i" || die "ssh-keygen failed for a host key"
    done
    write_outputs "$port" "$k"

    # Interrupted half-way: take down what was launched rather than leaving it behind.
    trap 'trap - INT TERM HUP; kill_nodes kill "${names[@]}"; write_tsv; die "start interrupted; nodes stopped"' INT TERM HUP
    for name in "${names[@]}"; do
        launch_node "$name"
    done
    if ! wait_nodes "${names[@]}"; then
        kill_nodes kill "${names[@]}"
        write_tsv
        die "fleet start failed; all nodes stopped (state kept in $DIR for inspection)"
    fi
    write_tsv
    if ! verify_ssh "${names[0]}"; then
        kill_nodes kill "${names[@]}"
        write_tsv
        die "fleet started but ssh logins fail; all nodes stopped"
    fi

    trap - INT TERM HUP

    if [[ -n $owner ]]; then
        setsid nohup bash "$SELF" __watchdog "$DIR" "$owner" "$owner_start" \
            </dev/null >>"$DIR/watchdog.log" 2>&1 8>&- &
        printf '%s\n' "$!" >"$DIR/watchdog.pid"
    fi

    local ms=$((($(now_us) - t0) / 1000))
    printf 'fleet: %d nodes up in %d.%03ds (port %s); ssh -F %s %s; inventory %s\n' \
        "$k" $((ms / 1000)) $((ms % 1000)) "$port" "$DIR/ssh_config" "${names[0]}" "$DIR/nodes.toml"
}

cmd_stop() {
    local d=${1:-}
    [[ -n $d ]] || die "missing state directory argument"
    if [[ ! -d $d ]]; then
        info "no state directory $d; nothing to stop"
        return 0
    fi
    set_dir "$d"
    [[ -d $NODES_DIR ]] || { info "no nodes in $DIR; nothing to stop"; stop_watchdog; return 0; }
    lock_dir
    stop_watchdog
    local -a names=()
    mapfile -t names < <(node_names)
    ((${#names[@]})) && kill_nodes term "${names[@]}"
    write_tsv
    info "fleet in $DIR stopped"
}

cmd_status() {
    set_dir "${1:-}"
    require_fleet
    local name pid
    for name in $(node_names); do
        load_node "$name"
        if pid=$(node_up_pid "$name"); then
            printf '%s %s:%s %s up\n' "$N_NAME" "$N_ADDR" "$N_PORT" "$pid"
        else
            printf '%s %s:%s - down\n' "$N_NAME" "$N_ADDR" "$N_PORT"
        fi
    done
}

cmd_stop_node() {
    set_dir "${1:-}"
    require_fleet
    local name
    name=$(resolve_node "${2:-}")
    lock_dir
    kill_nodes term "$name"
    write_tsv
    info "node $name stopped"
}

cmd_kill_node() {
    set_dir "${1:-}"
    require_fleet
    local name
    name=$(resolve_node "${2:-}")
    lock_dir
    kill_nodes kill "$name"
    write_tsv
    info "node $name killed"
}

# start_node_now NAME: (re)start one node; caller holds the lock.
start_node_now() {
    local name=$1
    kill_nodes term "$name" # leftovers (sessions of a node whose listener died)
    launch_node "$name"
    if ! wait_nodes "$name"; then
        kill_nodes kill "$name"
        write_tsv
        die "node $name failed to start"
    fi
    write_tsv
}

cmd_start_node() {
    set_dir "${1:-}"
    require_fleet
    local name pid
    name=$(resolve_node "${2:-}")
    lock_dir
    if pid=$(node_up_pid "$name"); then
        info "node $name is already up (pid $pid)"
        return 0
    fi
    start_node_now "$name"
    info "node $name up (pid $(node_up_pid "$name"))"
}

cmd_rekey_node() {
    set_dir "${1:-}"
    require_fleet
    local name
    name=$(resolve_node "${2:-}")
    lock_dir
    load_node "$name"
    kill_nodes term "$name"
    gen_host_key "$N_DIR" "$name"
    start_node_now "$name"
    ssh-keygen -l -f "$NODES_DIR/$name/ssh_host_ed25519_key.pub" | awk '{ print $2 }'
}

cmd_node_exec() {
    set_dir "${1:-}"
    require_fleet
    local name pid
    name=$(resolve_node "${2:-}")
    shift 2
    [[ ${1:-} == -- ]] && shift
    (($#)) || die "node-exec: missing command (usage: $PROG node-exec DIR N -- CMD...)"
    pid=$(node_up_pid "$name") || die "node $name is not up"
    exec nsenter -t "$pid" -m -u -- "$@"
}

cmd_watchdog() {
    local owner=$2 start=$3
    DIR=$1
    info "$(date '+%F %T') watchdog $$: stopping the fleet in $DIR when pid $owner exits"
    while [[ $(proc_starttime "$owner" 2>/dev/null || true) == "$start" ]]; do
        sleep 0.5
    done
    info "$(date '+%F %T') pid $owner exited; stopping the fleet"
    exec bash "$SELF" stop "$DIR"
}

main() {
    local cmd=${1:-}
    case $cmd in
        -h | --help | help) usage; return 0 ;;
        "") usage >&2; exit 2 ;;
    esac
    shift
    preflight
    case $cmd in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        stop-node) cmd_stop_node "$@" ;;
        start-node) cmd_start_node "$@" ;;
        kill-node) cmd_kill_node "$@" ;;
        rekey-node) cmd_rekey_node "$@" ;;
        node-exec) cmd_node_exec "$@" ;;
        __watchdog) cmd_watchdog "$@" ;;
        *) usage >&2; die "unknown command '$cmd'" ;;
    esac
}

main "$@"
