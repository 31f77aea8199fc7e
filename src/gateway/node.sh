# maestro's node-side gateway (POSIX sh, run as root): the distribution's
# nginx on the node's loopback address, in front of each agent's primary
# and preview instances. The controller prepends quoted assignments
# (g_action, g_agent, g_conf, ...); every line meant for it starts with
# "@@maestro ".
#
# Layout (README, "The gateway and the preview slot"):
#   /etc/maestro/gateway/nginx.conf          main config, includes agents/*.conf
#   /etc/maestro/gateway/agents/NAME.conf    one agent's upstreams and server;
#                                            first line `# maestro traffic=...`
#   /var/lib/maestro/gateway/                nginx's prefix (-p): temp paths
#   /var/log/maestro/gateway/{error,access}.log
#   /run/maestro/gateway.pid                 the master's PID (nginx writes it)
#
# A change is staged beside the live config, the complete new config is
# checked with `nginx -t`, and only then renamed into place and loaded by a
# graceful reload (SIGHUP to the verified master): a config nginx refuses
# never replaces a good one, and the running nginx keeps serving.
trap '' HUP PIPE
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
G=/etc/maestro/gateway
P=/var/lib/maestro/gateway
L=/var/log/maestro/gateway
PIDF=/run/maestro/gateway.pid
CONF=$G/nginx.conf
A=$G/agents/$g_agent.conf

_say() { printf '@@maestro %s\n' "$*" 2>/dev/null; }
_fail() { _say "result=failed" "detail=$*"; _cleanup; exit 1; }
_cleanup() {
    [ -z "${S:-}" ] || rm -rf "$S"
    [ -z "${T:-}" ] || rm -f "$T"
    [ -z "${g_locked:-}" ] || rm -rf "$P/.lock"
    g_locked= S= T=
}

_ms() { # milliseconds since the epoch (GNU date; whole seconds elsewhere)
    t=$(date +%s%N 2>/dev/null)
    case $t in *N | '') t=$(($(date +%s) * 1000)) ;; *) t=${t%??????} ;; esac
    ms=$t
}

_find_nginx() {
    NGINX=
    if [ -x /usr/sbin/nginx ]; then NGINX=/usr/sbin/nginx
    elif command -v nginx >/dev/null 2>&1; then NGINX=$(command -v nginx)
    fi
    [ -n "$NGINX" ]
}

# Directories root writes into: never through a symlink.
_dirs() {
    for d in /etc/maestro "$G" "$G/agents" /var/lib/maestro "$P" /var/log/maestro "$L" /run/maestro; do
        [ ! -L "$d" ] || _fail "$d is a symlink: refusing to write the gateway's files through it"
        [ -d "$d" ] || mkdir -m 0755 "$d" || _fail "cannot create $d"
    done
}

# One change of the gateway at a time on a node.
_lock() {
    i=0
    while ! mkdir "$P/.lock" 2>/dev/null; do
        holder=
        read -r holder <"$P/.lock/pid" 2>/dev/null
        if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
            rm -rf "$P/.lock"; continue
        fi
        i=$((i + 1))
        [ $i -lt 600 ] || _fail "another maestro job holds $P/.lock (pid ${holder:-unknown})"
        sleep 0.05
    done
    echo $$ >"$P/.lock/pid"
    g_locked=1
}

# The master the pidfile names, if it is this node's gateway: a root-owned
# regular file, a live process in this mount namespace (nodes of a test
# fleet share one PID namespace), and nginx with our config on its command
# line. A stale pidfile (a reused PID) is never believed -> g_pid.
_running() {
    g_pid=
    [ -f "$PIDF" ] && [ ! -L "$PIDF" ] && [ -O "$PIDF" ] || return 1
    read -r pid <"$PIDF" 2>/dev/null
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    [ /proc/$pid/ns/mnt -ef /proc/$$/ns/mnt ] || return 1
    read -r st 2>/dev/null <"/proc/$pid/stat" || return 1
    case ${st##*) } in Z* | X*) return 1 ;; esac
    cmd=
    IFS= read -r cmd 2>/dev/null <"/proc/$pid/cmdline"
    case $cmd in *nginx*"$CONF"*) ;; *) return 1 ;; esac
    g_pid=$pid
}

# The worker processes of the master g_pid, as one line of PIDs.
_workers() {
    w=
    read -r w 2>/dev/null <"/proc/$g_pid/task/$g_pid/children"
}

# The main config; its include names `$1` (the live directory, or a
# staging directory when checking a change).
_main() {
    cat <<EOF
# maestro's gateway on this node: written by maestro, replaced on every change.
daemon on;
worker_processes 1;
worker_shutdown_timeout 10s;
pid $PIDF;
error_log $L/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log $L/access.log combined buffer=64k flush=1s;
    client_body_temp_path $P/client_body_temp;
    proxy_temp_path $P/proxy_temp;
    fastcgi_temp_path $P/fastcgi_temp;
    uwsgi_temp_path $P/uwsgi_temp;
    scgi_temp_path $P/scgi_temp;
    keepalive_timeout 65s;
    server_tokens off;
    include $1/*.conf;
}
EOF
}

_status() {
    run=0; _running && run=1
    traffic= configured=0
    if [ -f "$A" ] && [ ! -L "$A" ]; then
        configured=1
        IFS= read -r head <"$A"
        for w in $head; do case $w in traffic=*) traffic=${w#traffic=} ;; esac; done
    fi
    _say "gateway" "running=$run" "pid=$g_pid" "configured=$configured" "traffic=$traffic" "port=$g_port"
}

# The last lines nginx logged, on one line.
_errlog() {
    e=$(tail -n 3 "$L/error.log" 2>/dev/null | tr '\n' ' ')
}

_http_ok() { # url timeout_seconds
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time "$2" "$1" 2>/dev/null
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O /dev/null -T "$2" "$1" 2>/dev/null
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))' "$1" "$2" 2>/dev/null
    fi
}

_set() {
    _find_nginx || _fail "no nginx on this node: install the distribution's nginx (nginx-light on Debian)"
    # Clients are sent to the preview only when it answers its health check.
    if [ -n "$g_check" ] && ! _http_ok "$g_check" 2; then
        _status
        _say "result=refused" "detail=the preview instance does not answer its health check ($g_check), so it gets no clients; deploy it first (maestro deploy $g_agent@VERSION --slot preview); nothing was changed"
        exit 1
    fi
    _dirs
    _lock
    # Stage the complete new config: this agent's new file, every other
    # agent's file as it is, and a main config that includes them.
    S=$G/.stage.$$
    rm -rf "$S"
    mkdir -m 0700 "$S" "$S/agents" || _fail "cannot create $S"
    for f in "$G"/agents/*.conf; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        [ "$f" = "$A" ] && continue
        cp "$f" "$S/agents/" || _fail "cannot stage $f"
    done
    printf '%s' "$g_conf" >"$S/agents/$g_agent.conf" || _fail "cannot write $S/agents/$g_agent.conf"
    _main "$S/agents" >"$S/nginx.conf" || _fail "cannot write $S/nginx.conf"
    if ! out=$("$NGINX" -t -q -p "$P/" -c "$S/nginx.conf" -e stderr 2>&1); then
        out=$(printf '%s' "$out" | tr '\n' ' ')
        rm -rf "$S"; S=
        _status
        _say "result=invalid" "detail=nginx -t refused the new config, nothing was changed: ${out:-no output}"
        _cleanup
        exit 1
    fi
    run=0; _running && run=1
    same=0
    if [ -f "$A" ] && [ -f "$CONF" ] && cmp -s "$A" "$S/agents/$g_agent.conf"; then
        _main "$G/agents" | cmp -s - "$CONF" && same=1
    fi
    if [ "$same" = 1 ] && [ "$run" = 1 ]; then
        _cleanup
        _status
        _say "result=unchanged" "detail=the gateway already applies $g_traffic"
        exit 0
    fi
    # Swap in: temp files in the destination directories, then rename.
    rm -f "$A.previous"
    had=0
    if [ -f "$A" ] && [ ! -L "$A" ]; then cp -p "$A" "$A.previous" && had=1; fi
    T=$G/agents/.$g_agent.conf.$$
    mv -f "$S/agents/$g_agent.conf" "$T" && mv -f "$T" "$A" || _fail "cannot write $A"
    T=$G/.nginx.conf.$$
    _main "$G/agents" >"$T" && mv -f "$T" "$CONF" || _fail "cannot write $CONF"
    T=
    rm -rf "$S"; S=
    if [ "$run" = 0 ]; then
        _ms; t0=$ms
        if ! out=$("$NGINX" -p "$P/" -c "$CONF" -e "$L/error.log" 2>&1); then
            _errlog
            _fail "nginx did not start: $(printf '%s' "$out" | tr '\n' ' ')$e"
        fi
        i=0
        while ! _running && [ $i -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
        _running || { _errlog; _fail "nginx started but $PIDF names no running gateway: $e"; }
        _ms
        rm -f "$A.previous"
        _status
        _say "result=started" "ms=$((ms - t0))" "detail=nginx started with $g_traffic"
        _cleanup
        exit 0
    fi
    # Graceful reload: the master checks the config again, starts new
    # workers on the same listening sockets, then tells the old ones to
    # stop accepting and finish their requests. Done when a new worker runs
    # and no old one still accepts (each is gone or "shutting down"): from
    # then on only the new config answers new connections.
    _workers; old=" $w "
    _ms; t0=$ms
    kill -HUP "$g_pid" || _fail "cannot signal nginx ($g_pid)"
    i=0 new= left=
    while [ $i -lt 250 ]; do
        _workers
        new= left=
        for c in $w; do case $old in *" $c "*) ;; *) new=$c ;; esac; done
        if [ -n "$new" ]; then
            for c in $old; do
                t=
                IFS= read -r t 2>/dev/null <"/proc/$c/cmdline"
                case $t in '' | *"shutting down"*) ;; *) left=1 ;; esac
            done
            [ -z "$left" ] && break
        fi
        sleep 0.02; i=$((i + 1))
    done
    _ms
    if [ -z "$new" ] || [ -n "$left" ]; then
        # nginx kept the config it runs: so does the disk.
        if [ "$had" = 1 ]; then mv -f "$A.previous" "$A"; else rm -f "$A"; fi
        _errlog
        _status
        _say "result=failed" "detail=nginx did not load the new config (it keeps serving the old one): $e"
        _cleanup
        exit 1
    fi
    rm -f "$A.previous"
    _status
    _say "result=reloaded" "ms=$((ms - t0))" "detail=nginx reloaded with $g_traffic"
    _cleanup
}

case $g_action in
status)
    _status
    ;;
set)
    _set
    ;;
*)
    _fail "unknown action $g_action"
    ;;
esac
