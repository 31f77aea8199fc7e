# maestro's node-side agent runtime (POSIX sh, run as root).
# The controller prepends quoted assignments (a_action, a_name, ...) and runs
# this with the artifact, when it sends one, on standard input. Every line
# meant for the controller starts with "@@maestro ".
#
# Layout (README, "The agent on a node"):
#   /opt/maestro/agents/NAME/VERSION/   unpacked artifact, .maestro-sha256 in it
#   /opt/maestro/agents/NAME/current -> VERSION
#   /var/lib/maestro/agents/NAME/{state,env,killed,data/}
#   /var/log/maestro/agents/NAME.log
#   /run/maestro/agent-NAME.pid         PID and start time; the agent leads its session
#
# The preview slot (a_slot=preview): a second instance of the agent beside
# the primary one, on its own port, for canaries, blue/green and shadows
# behind the node's gateway. Its files are the primary's with `preview`:
#   /opt/maestro/agents/NAME/preview -> VERSION
#   /var/lib/maestro/agents/NAME/{state.preview,env.preview}
#   /var/log/maestro/agents/NAME.preview.log
#   /run/maestro/agent-NAME.preview.pid, unit maestro-agent-NAME-preview
# A job on one slot never stops, switches or prunes what the other runs.
# Both slots share the lock, the data directory and the kill marker.
#
# Once the artifact is in, the deploy runs to its end even if the controller
# goes away (SIGHUP and SIGPIPE ignored; output to a closed channel is lost,
# the work is not): a node is never left between versions by a dropped
# connection, and a second deploy finds the result in the state file.
trap '' HUP PIPE
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
a_base=/opt/maestro/agents/$a_name
a_var=/var/lib/maestro/agents/$a_name
a_killed=$a_var/killed
# The files of one slot; the port it listens on.
_slot() {
    case $1 in
        preview) a_which=preview a_sfx=.preview a_link=$a_base/preview a_port=$a_preview_port
            a_unit=maestro-agent-$a_name-preview ;;
        *) a_which=primary a_sfx= a_link=$a_base/current a_port=$a_primary_port
            a_unit=maestro-agent-$a_name ;;
    esac
    a_state=$a_var/state$a_sfx
    a_envf=$a_var/env$a_sfx
    a_pidfile=/run/maestro/agent-$a_name$a_sfx.pid
    a_log=/var/log/maestro/agents/$a_name$a_sfx.log
}
_slot "$a_slot"
if [ -d /run/systemd/system ]; then a_init=systemd; else a_init=none; fi

_say() { printf '@@maestro %s\n' "$*" 2>/dev/null; }
_fail() { _say "result=failed" "detail=$*"; _unlock; exit 1; }

# The lock: one deploy or stop of an agent at a time on a node. A second
# deploy started while a first one (from a crashed controller) is still
# switching waits for it and then sees its result.
_lock() {
    mkdir -p -m 0755 "$a_var" /run/maestro || _fail "cannot create $a_var"
    i=0
    while ! mkdir "$a_var/.lock" 2>/dev/null; do
        holder=
        read -r holder <"$a_var/.lock/pid" 2>/dev/null
        if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
            rm -rf "$a_var/.lock"; continue
        fi
        i=$((i + 1))
        [ $i -lt 1200 ] || _fail "another maestro job holds $a_var/.lock (pid ${holder:-unknown})"
        sleep 0.1
    done
    echo $$ >"$a_var/.lock/pid"
    a_locked=1
}
_unlock() { [ -z "${a_locked:-}" ] || rm -rf "$a_var/.lock"; a_locked=; }

# The state file: key=value lines.
_read_state() {
    s_version= s_digest= s_since= s_previous= s_enabled=
    [ -f "$a_state" ] && [ ! -L "$a_state" ] || return 0
    while IFS='=' read -r k v; do
        case $k in
            version) s_version=$v ;; digest) s_digest=$v ;; since) s_since=$v ;;
            previous) s_previous=$v ;; enabled) s_enabled=$v ;;
        esac
    done <"$a_state"
}
_write_state() { # version digest since previous enabled
    t=$a_var/.state.$$
    {
        printf 'agent=%s\nversion=%s\ndigest=%s\nsince=%s\nprevious=%s\n' "$a_name" "$1" "$2" "$3" "$4"
        printf 'host=%s\nport=%s\nmetrics=%s\npidfile=%s\nenabled=%s\nslot=%s\n' "$a_host" "$a_port" "$a_metrics" "$a_pidfile" "$5" "$a_which"
    } >"$t" && mv -f "$t" "$a_state" || _fail "cannot write $a_state"
}

# The process the pidfile names, if it is still the one we started (same
# start time, leads its own session) -> a_pid.
_running() {
    a_pid=
    if [ "$a_init" = systemd ]; then
        systemctl is-active --quiet "$a_unit" && a_pid=$(systemctl show -p MainPID --value "$a_unit")
        [ -n "$a_pid" ] && [ "$a_pid" != 0 ]
        return
    fi
    [ -f "$a_pidfile" ] && [ ! -L "$a_pidfile" ] || return 1
    { read -r pid; read -r start; } <"$a_pidfile" 2>/dev/null
    case $pid:$start in *[!0-9:]* | :* | *:) return 1 ;; esac
    read -r st <"/proc/$pid/stat" 2>/dev/null || return 1
    r=${st##*) }
    set -f; set -- $r; set +f
    [ "$1" != Z ] && [ "$4" = "$pid" ] || return 1
    shift 19
    [ "$1" = "$start" ] || return 1
    a_pid=$pid
}

_stop() {
    if [ "$a_init" = systemd ]; then systemctl stop "$a_unit" 2>/dev/null; return 0; fi
    _running || { rm -f "$a_pidfile"; return 0; }
    kill -TERM "-$a_pid" 2>/dev/null || kill -TERM "$a_pid" 2>/dev/null
    i=0
    while kill -0 "-$a_pid" 2>/dev/null && [ $i -lt 50 ]; do
        read -r st <"/proc/$a_pid/stat" 2>/dev/null && case ${st##*) } in Z*) wait "$a_pid" 2>/dev/null; continue ;; esac
        sleep 0.1; i=$((i + 1))
    done
    kill -0 "-$a_pid" 2>/dev/null && kill -KILL "-$a_pid" 2>/dev/null
    rm -f "$a_pidfile"
    return 0
}

# Start the version `current` points at. The kill switch's marker wins.
_start() {
    [ ! -e "$a_killed" ] || { _say "result=refused" "detail=the kill switch is engaged for $a_name on this node ($a_killed)"; _unlock; exit 4; }
    mkdir -p -m 0755 "${a_log%/*}" "$a_var/data" || _fail "cannot create ${a_log%/*}"
    if [ "$a_init" = systemd ]; then
        t=/etc/systemd/system/.$a_unit.service.$$
        {
            printf '[Unit]\nDescription=maestro agent %s\n\n[Service]\n' "$a_name"
            printf 'WorkingDirectory=%s\nEnvironmentFile=%s\n' "$a_link" "$a_envf"
            printf "ExecCondition=/bin/sh -c '! test -e %s'\n" "$a_killed"
            printf "ExecStart=/bin/sh -c 'exec %s'\n" "$a_command"
            printf 'Restart=on-failure\nStandardOutput=append:%s\nStandardError=append:%s\n' "$a_log" "$a_log"
            printf '\n[Install]\nWantedBy=multi-user.target\n'
        } >"$t" && mv -f "$t" "/etc/systemd/system/$a_unit.service" || _fail "cannot write the unit $a_unit"
        systemctl daemon-reload && systemctl enable --quiet "$a_unit" 2>/dev/null
        systemctl restart "$a_unit" || _fail "systemctl restart $a_unit failed"
        return 0
    fi
    command -v setsid >/dev/null 2>&1 || _fail "no setsid on this node"
    env -i PATH="$PATH" HOME="$a_var/data" LANG=C.UTF-8 \
        setsid /bin/sh -c 'set -a; . "$1"; set +a; cd "$2" || exit 1; eval "exec $3"' \
        "agent-$a_name$a_sfx" "$a_envf" "$a_link/" "$a_command" \
        </dev/null >>"$a_log" 2>&1 &
    pid=$!
    read -r st <"/proc/$pid/stat" || _fail "$a_name did not start"
    r=${st##*) }; set -f; set -- $r; set +f; shift 19
    t=/run/maestro/.agent-$a_name.pid.$$
    printf '%s\n%s\n' "$pid" "$1" >"$t" && mv -f "$t" "$a_pidfile" || _fail "cannot write $a_pidfile"
    # Until setsid has run in the child, it does not lead its session yet
    # and would not count as ours: wait for that (or for it to die).
    i=0
    while [ $i -lt 100 ]; do
        read -r st <"/proc/$pid/stat" 2>/dev/null || break
        r=${st##*) }; set -f; set -- $r; set +f
        [ "$4" = "$pid" ] && break
        sleep 0.02; i=$((i + 1))
    done
}

_http_ok() { # url timeout_seconds
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time "$2" "$1" 2>/dev/null
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O /dev/null -T "$2" "$1" 2>/dev/null
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))' "$1" "$2" 2>/dev/null
    else
        a_probe_error="no curl, wget or python3 on this node for the HTTP health check"; return 1
    fi
}
_probe_once() {
    _running || { a_probe_error="the process is not running (see $a_log)"; return 1; }
    case $a_health in
        http) _http_ok "http://$a_host:$a_port$a_health_arg" "$a_timeout" || { a_probe_error=${a_probe_error:-"GET http://$a_host:$a_port$a_health_arg failed"}; return 1; } ;;
        command)
            (cd "$a_link/" && set -a && . "$a_envf" && set +a && eval "$a_health_arg") </dev/null >/dev/null 2>&1 \
                || { a_probe_error="the health command failed: $a_health_arg"; return 1; } ;;
    esac
    return 0
}
# Healthy: the probe passes within `retries` tries, and keeps passing (and
# the process keeps running) for min_healthy.
_healthy() {
    a_probe_error= tries=0
    while :; do
        tries=$((tries + 1))
        _probe_once && break
        [ $tries -lt "$a_retries" ] || return 1
        sleep "$a_interval"
    done
    [ "$a_min_healthy" = 0 ] && return 0
    sleep "$a_min_healthy"
    _probe_once
}

_digest_of() {
    if command -v sha256sum >/dev/null 2>&1; then set -- $(sha256sum <"$1")
    elif command -v shasum >/dev/null 2>&1; then set -- $(shasum -a 256 <"$1")
    elif command -v openssl >/dev/null 2>&1; then set -- $(openssl dgst -sha256 -r <"$1")
    else return 1; fi
    a_got=$1
}

_switch() { # version: point the slot's link (`current`, `preview`) at it, atomically
    t=$a_base/.${a_link##*/}.$$
    ln -s "$1" "$t" || _fail "cannot create a link in $a_base"
    mv -T -f "$t" "$a_link" 2>/dev/null \
        || { rm -f "$a_link" && mv -f "$t" "$a_link"; } \
        || _fail "cannot switch $a_link to $1"
}

# The new environment; the running one is kept beside it until the new
# version is healthy, so a rollback restarts the old version as it ran.
_write_env() {
    rm -f "$a_envf.previous"
    [ ! -f "$a_envf" ] || cp -p "$a_envf" "$a_envf.previous" || _fail "cannot keep $a_envf"
    t=$a_var/.env.$$
    printf '%s' "$a_env" >"$t" && chmod 0600 "$t" && mv -f "$t" "$a_envf" || _fail "cannot write $a_envf"
}

# Keep `keep` versions: the running one, the previous one, then the newest;
# never the version the other slot runs.
_prune() {
    n=0
    other=$a_base/preview; [ "$a_which" = preview ] && other=$a_base/current
    o=; [ -L "$other" ] && o=$(readlink "$other")
    for d in $(ls -t "$a_base" 2>/dev/null); do
        case $d in current | preview | .*) continue ;; esac
        [ -d "$a_base/$d" ] && [ ! -L "$a_base/$d" ] || continue
        n=$((n + 1))
        [ "$d" = "$a_version" ] || [ "$d" = "$1" ] || [ "$d" = "$o" ] && continue
        [ $n -le "$a_keep" ] || rm -rf -- "${a_base:?}/$d"
    done
}

_status() { # word: `state` (the slot worked on, or the primary) or `preview`
    _read_state
    run=0; _running && run=1
    killed=0; [ -e "$a_killed" ] && killed=1
    link=; [ -L "$a_link" ] && link=$(readlink "$a_link")
    healthy=
    if [ "$run" = 1 ] && [ "${a_probe:-0}" = 1 ] && { [ -n "$a_port" ] || [ "$a_health" != http ]; }; then
        healthy=0; _probe_once && healthy=1
    fi
    _say "$1" "slot=$a_which" "port=$a_port" "version=$s_version" "digest=$s_digest" "since=$s_since" "previous=$s_previous" \
        "enabled=$s_enabled" "running=$run" "pid=$a_pid" "killed=$killed" "current=$link" "healthy=$healthy"
}

case $a_action in
status)
    # Both slots: the primary as `state`, the preview instance as `preview`.
    _slot primary
    _status state
    _slot preview
    _status preview
    ;;
probe)
    # What a deploy of a_version would do: it needs the artifact unless the
    # version is already unpacked with the right digest.
    _status state
    have=0
    if [ -f "$a_base/$a_version/.maestro-sha256" ]; then
        read -r d <"$a_base/$a_version/.maestro-sha256" && [ "$d" = "$a_digest" ] && have=1
    fi
    free=$(df -Pk "${a_base%/*}" 2>/dev/null | { read -r _; read -r _ _ _ f _; echo "$f"; })
    [ -n "$free" ] || free=$(df -Pk / 2>/dev/null | { read -r _; read -r _ _ _ f _; echo "$f"; })
    _say "have=$have" "free_kb=$free"
    ;;
deploy)
    _lock
    _read_state
    [ ! -e "$a_killed" ] || { _say "result=refused" "detail=the kill switch is engaged for $a_name on this node"; _unlock; exit 4; }
    if [ "$a_transfer" = 1 ]; then
        mkdir -p -m 0755 "$a_base" || _fail "cannot create $a_base"
        tmp=$a_base/.incoming.$$
        cat >"$tmp" || { rm -f "$tmp"; _fail "cannot receive the artifact into $a_base (disk full?)"; }
        _digest_of "$tmp" || { rm -f "$tmp"; _fail "no sha256sum, shasum or openssl on this node to check the artifact"; }
        if [ "$a_got" != "$a_digest" ]; then
            rm -f "$tmp"
            _fail "the artifact's sha256 on this node is $a_got, expected $a_digest; nothing was unpacked, ${s_version:-nothing} keeps running"
        fi
        rm -rf "$a_base/.unpack.$$"
        mkdir "$a_base/.unpack.$$" || _fail "cannot unpack into $a_base"
        tar -xzf "$tmp" --no-same-owner -C "$a_base/.unpack.$$" >/dev/null 2>&1 \
            || { rm -rf "$tmp" "$a_base/.unpack.$$"; _fail "cannot unpack the artifact (disk full, or not a .tar.gz); ${s_version:-nothing} keeps running"; }
        rm -f "$tmp"
        printf '%s\n' "$a_digest" >"$a_base/.unpack.$$/.maestro-sha256"
        rm -rf -- "${a_base:?}/$a_version"
        mv "$a_base/.unpack.$$" "$a_base/$a_version" || _fail "cannot move the unpacked version into place"
    fi
    read -r d <"$a_base/$a_version/.maestro-sha256" 2>/dev/null
    [ "$d" = "$a_digest" ] || _fail "$a_base/$a_version is not the artifact with sha256 $a_digest (send it again)"
    old_running=0; _running && old_running=1
    link=; [ -L "$a_link" ] && link=$(readlink "$a_link")
    if [ "$s_version" = "$a_version" ] && [ "$s_digest" = "$a_digest" ] && [ "$link" = "$a_version" ] \
        && [ "$old_running" = 1 ] && [ "$s_enabled" != 0 ]; then
        _say "result=unchanged" "detail=$a_version is running"
        _unlock; exit 0
    fi
    previous=$s_version
    [ "$previous" = "$a_version" ] && previous=$s_previous
    _stop
    _write_env
    _switch "$a_version"
    _start
    if _healthy; then
        since=$(date +%s)
        _write_state "$a_version" "$a_digest" "$since" "$previous" 1
        rm -f "$a_envf.previous"
        _prune "$previous"
        _say "result=deployed" "from=$s_version" "detail=healthy"
        _unlock; exit 0
    fi
    why=$a_probe_error
    _stop
    if [ "$a_which" = preview ]; then
        # A preview has nothing to go back to: it is stopped, the primary
        # was never touched.
        rm -f "$a_link" "$a_envf.previous"
        _write_state "" "" "" "" 0
        _fail "$a_version failed its health check ($why) in the preview slot; the preview instance is stopped, the primary was not touched"
    fi
    if [ -n "$previous" ] && [ -f "$a_base/$previous/.maestro-sha256" ]; then
        read -r pd <"$a_base/$previous/.maestro-sha256"
        [ ! -f "$a_envf.previous" ] || mv -f "$a_envf.previous" "$a_envf"
        _switch "$previous"
        _start
        back=healthy; _healthy || back="unhealthy: $a_probe_error"
        _write_state "$previous" "$pd" "$s_since" "$s_previous" 1
        _say "result=rolled_back" "to=$previous" "detail=$a_version failed its health check ($why); back on $previous ($back)"
        _unlock; exit 1
    fi
    rm -f "$a_link"
    _write_state "" "" "" "" 0
    _fail "$a_version failed its health check ($why) and there is no previous version to go back to; the agent is stopped"
    ;;
disable)
    _lock
    _read_state
    _stop
    if [ "$a_init" = systemd ]; then
        systemctl disable --quiet "$a_unit" 2>/dev/null
        rm -f "/etc/systemd/system/$a_unit.service"; systemctl daemon-reload
    fi
    if [ "$s_enabled" = 0 ] || [ -z "$s_version" ]; then
        _say "result=unchanged" "detail=not enabled"
    else
        _write_state "$s_version" "$s_digest" "$s_since" "$s_previous" 0
        _say "result=disabled" "detail=$s_version stopped; its files are kept"
    fi
    _unlock
    ;;
*)
    _fail "unknown action $a_action"
    ;;
esac
