# maestro module library: POSIX sh, sent once at the top of every playbook
# script. Every value reaches these functions as a single-quoted argument;
# nothing here evaluates its arguments, except `command` (whose `run`, `unless`
# are commands by definition, rendered with every variable shell-quoted).
#
# Protocol: lines starting with \036M<nonce> on stdout are markers the
# controller parses; everything between `X-begin` and `X-end` markers belongs
# to block X (diff, out) of the current task.

_m_emit() { printf '\036M%s %s\n' "$_m_nonce" "$*"; }
_m_ok() { _m_status=ok; _m_msg=$*; }
_m_changed() { _m_status=changed; _m_msg=$*; }
_m_fail() { _m_status=failed; _m_msg=$*; }
_m_begin() { _m_status=ok; _m_msg=; _m_emit begin "$1"; }
_m_end() { _m_emit end "$1" "$_m_status" "$_m_msg"; }
_m_block() { # name file: emit a file's content as a block
    [ -s "$2" ] || return 0
    _m_emit "$1-begin"
    cat "$2"
    [ -n "$(tail -c 1 "$2")" ] && echo
    _m_emit "$1-end"
}

# --- facts -----------------------------------------------------------------
_m_facts() {
    # Few forks: one uname, one subshell for os-release, builtins for the rest.
    set -f
    # shellcheck disable=SC2046 # hostname, kernel and arch hold no spaces
    set -- $(uname -nrm)
    set +f
    _m_os=unknown _m_os_family=unknown _m_os_version=
    if [ -r /etc/os-release ]; then
        r=$(. /etc/os-release && printf '%s|%s|%s' "${ID:-unknown}" "${VERSION_ID:-}" "${ID_LIKE:-${ID:-unknown}}")
        _m_os=${r%%|*}; r=${r#*|}; _m_os_version=${r%%|*}; _m_os_family=${r#*|}; _m_os_family=${_m_os_family%% *}
    fi
    _m_pkg=none
    for p in apt-get dnf yum apk; do
        if command -v "$p" >/dev/null 2>&1; then _m_pkg=$p; break; fi
    done
    [ "$_m_pkg" = apt-get ] && _m_pkg=apt
    if [ -d /run/systemd/system ]; then _m_init=systemd; else _m_init=none; fi
    _m_emit facts "hostname=$1" "kernel=$2" "arch=$3" "os=$_m_os" \
        "os_family=$_m_os_family" "os_version=$_m_os_version" "pkg=$_m_pkg" "init=$_m_init" "user=${USER:-$(id -un)}"
}

# --- helpers ---------------------------------------------------------------
# Compare and (unless checking) fix mode/owner/group of an existing path.
# Appends what changed to _m_attr_changes.
_m_attrs() { # path mode owner group
    _m_attr_changes=
    [ -n "$2$3$4" ] || return 0
    # One stat for all three: every fork counts when a node runs dozens of tasks.
    set -- "$1" "$2" "$3" "$4" "$(stat -c '%a %U %G' "$1" 2>/dev/null)"
    cur_mode=${5%% *}; rest=${5#* }; cur_owner=${rest%% *}; cur_group=${rest#* }
    want=$2
    while [ "${want#0}" != "$want" ] && [ "${#want}" -gt 1 ]; do want=${want#0}; done
    if [ -n "$2" ] && [ "$cur_mode" != "$want" ]; then
        _m_attr_changes="$_m_attr_changes mode=$2"
        [ "$_m_check" = 1 ] || chmod "$2" "$1" || return 1
    fi
    if [ -n "$3" ] && [ "$cur_owner" != "$3" ]; then
        _m_attr_changes="$_m_attr_changes owner=$3"
        [ "$_m_check" = 1 ] || chown "$3" "$1" || return 1
    fi
    if [ -n "$4" ] && [ "$cur_group" != "$4" ]; then
        _m_attr_changes="$_m_attr_changes group=$4"
        [ "$_m_check" = 1 ] || chgrp "$4" "$1" || return 1
    fi
    return 0
}
_m_diff() { # label old new (files); only with --diff, never for sensitive content
    [ "$_m_diff" = 1 ] || return 0
    if [ "$4" = 1 ]; then
        printf '(content hidden: sensitive)\n' >"$_m_tmp/diff"
    elif command -v diff >/dev/null 2>&1; then
        diff -u -L "$1 (before)" -L "$1 (after)" "$2" "$3" >"$_m_tmp/diff" 2>&1
    else
        printf '(no diff tool on this node)\n' >"$_m_tmp/diff"
    fi
    _m_block diff "$_m_tmp/diff"
}

# --- modules ---------------------------------------------------------------
_m_dir() { # path mode owner group
    if [ -d "$1" ]; then
        _m_attrs "$1" "$2" "$3" "$4" || { _m_fail "cannot set attributes of $1"; return; }
        [ -n "$_m_attr_changes" ] && _m_changed "$1:$_m_attr_changes" || _m_ok "$1"
        return
    fi
    if [ -e "$1" ]; then _m_fail "$1 exists and is not a directory"; return; fi
    if [ "$_m_check" = 1 ]; then _m_changed "would create $1"; return; fi
    mkdir -p "$1" || { _m_fail "cannot create $1"; return; }
    _m_attrs "$1" "$2" "$3" "$4" || { _m_fail "cannot set attributes of $1"; return; }
    _m_changed "created $1"
}

_m_file() { # path content mode owner group sensitive
    printf '%s' "$2" >"$_m_tmp/new" || { _m_fail "cannot write a temporary file"; return; }
    _m_put "$1" "$_m_tmp/new" "$3" "$4" "$5" "$6"
}

_m_put() { # path newfile mode owner group sensitive
    if [ -d "$1" ]; then _m_fail "$1 is a directory"; return; fi
    if [ -f "$1" ] && cmp -s "$1" "$2"; then
        _m_attrs "$1" "$3" "$4" "$5" || { _m_fail "cannot set attributes of $1"; return; }
        [ -n "$_m_attr_changes" ] && _m_changed "$1:$_m_attr_changes" || _m_ok "$1"
        return
    fi
    if [ -f "$1" ]; then _m_diff "$1" "$1" "$2" "$6"; else : >"$_m_tmp/empty"; _m_diff "$1" "$_m_tmp/empty" "$2" "$6"; fi
    if [ "$_m_check" = 1 ]; then _m_changed "would write $1"; return; fi
    dir=$(dirname "$1")
    [ -d "$dir" ] || { _m_fail "directory $dir does not exist"; return; }
    # Write beside the target and rename: readers never see half a file.
    cp "$2" "$1.maestro-new" && {
        [ -z "$3" ] || chmod "$3" "$1.maestro-new"
    } && {
        [ -z "$4" ] || chown "$4" "$1.maestro-new"
    } && {
        [ -z "$5" ] || chgrp "$5" "$1.maestro-new"
    } && mv -f "$1.maestro-new" "$1" || { rm -f "$1.maestro-new"; _m_fail "cannot write $1"; return; }
    _m_changed "wrote $1"
}

_m_line() { # path line regexp state(present|absent) create(0|1)
    if [ ! -f "$1" ]; then
        if [ "$4" = absent ]; then _m_ok "$1 does not exist"; return; fi
        if [ "$5" != 1 ]; then _m_fail "$1 does not exist (set create = true to create it)"; return; fi
        : >"$_m_tmp/old"
    else
        cp "$1" "$_m_tmp/old" || { _m_fail "cannot read $1"; return; }
    fi
    # ENVIRON keeps the values raw: awk -v would interpret backslashes.
    M_LINE=$2 M_RE=$3 M_STATE=$4 awk '
        BEGIN { line = ENVIRON["M_LINE"]; re = ENVIRON["M_RE"]; state = ENVIRON["M_STATE"]; last = 0 }
        { text[NR] = $0; hit = (re != "") ? ($0 ~ re) : ($0 == line); if (hit) { last = NR; hits[NR] = 1 } }
        END {
            for (i = 1; i <= NR; i++) {
                if (state == "absent" && hits[i]) continue
                if (state == "present" && re != "" && i == last) { print line; continue }
                print text[i]
            }
            if (state == "present" && last == 0) print line
        }' "$_m_tmp/old" >"$_m_tmp/new" || { _m_fail "awk failed on $1"; return; }
    if cmp -s "$_m_tmp/old" "$_m_tmp/new"; then _m_ok "$1"; return; fi
    _m_diff "$1" "$_m_tmp/old" "$_m_tmp/new" 0
    if [ "$_m_check" = 1 ]; then _m_changed "would edit $1"; return; fi
    if [ -f "$1" ]; then cat "$_m_tmp/new" >"$1"; else cp "$_m_tmp/new" "$1"; fi || { _m_fail "cannot write $1"; return; }
    _m_changed "edited $1"
}

_m_absent() { # path
    if [ ! -e "$1" ] && [ ! -L "$1" ]; then _m_ok "$1 is absent"; return; fi
    if [ "$_m_check" = 1 ]; then _m_changed "would remove $1"; return; fi
    rm -rf -- "$1" || { _m_fail "cannot remove $1"; return; }
    _m_changed "removed $1"
}

_m_command() { # run creates removes unless chdir
    if [ -n "$2" ] && [ -e "$2" ]; then _m_ok "skipped: $2 exists"; return; fi
    if [ -n "$3" ] && [ ! -e "$3" ]; then _m_ok "skipped: $3 does not exist"; return; fi
    if [ -n "$4" ] && (cd "${5:-.}" && sh -c "$4") >/dev/null 2>&1; then _m_ok "skipped: unless-command succeeded"; return; fi
    if [ "$_m_check" = 1 ]; then _m_changed "would run"; return; fi
    (cd "${5:-.}" && sh -c "$1") </dev/null >"$_m_tmp/out" 2>&1
    rc=$?
    _m_block out "$_m_tmp/out"
    if [ "$rc" -ne 0 ]; then _m_fail "exit code $rc"; return; fi
    _m_changed "ran"
}

_m_pkg_installed() { # name
    case $_m_pkg in
        apt) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' ;;
        dnf|yum) rpm -q "$1" >/dev/null 2>&1 ;;
        apk) apk info -e "$1" >/dev/null 2>&1 ;;
        *) return 2 ;;
    esac
}
_m_package() { # state name...
    state=$1; shift
    [ "$_m_pkg" != none ] || { _m_fail "no supported package manager (apt, dnf, yum, apk) on this node"; return; }
    todo=
    for p in "$@"; do
        if _m_pkg_installed "$p"; then [ "$state" = absent ] && todo="$todo $p"
        else [ "$state" = present ] && todo="$todo $p"; fi
    done
    if [ -z "$todo" ]; then _m_ok "packages already $state"; return; fi
    if [ "$_m_check" = 1 ]; then _m_changed "would make$todo $state"; return; fi
    # shellcheck disable=SC2086 # $todo holds validated package names
    case $_m_pkg:$state in
        apt:present) DEBIAN_FRONTEND=noninteractive apt-get install -y -q $todo ;;
        apt:absent) DEBIAN_FRONTEND=noninteractive apt-get remove -y -q $todo ;;
        dnf:present|yum:present) "$_m_pkg" install -y -q $todo ;;
        dnf:absent|yum:absent) "$_m_pkg" remove -y -q $todo ;;
        apk:present) apk add -q $todo ;;
        apk:absent) apk del -q $todo ;;
    esac >"$_m_tmp/out" 2>&1 || { _m_block out "$_m_tmp/out"; _m_fail "$_m_pkg could not make$todo $state"; return; }
    _m_changed "made$todo $state"
}

_m_service() { # name state enabled(''|0|1) command pidfile
    if [ "$_m_init" = systemd ]; then
        active=0; systemctl is-active --quiet "$1" && active=1
        changes=
        case $2 in
            started) [ "$active" = 1 ] || changes="start" ;;
            stopped) [ "$active" = 0 ] || changes="stop" ;;
            restarted) changes="restart" ;;
        esac
        if [ -n "$3" ]; then
            en=0; systemctl is-enabled --quiet "$1" && en=1
            [ "$en" = "$3" ] || { [ "$3" = 1 ] && changes="$changes enable" || changes="$changes disable"; }
        fi
        [ -n "$changes" ] || { _m_ok "$1 is $2"; return; }
        if [ "$_m_check" = 1 ]; then _m_changed "would$changes $1"; return; fi
        for c in $changes; do systemctl "$c" "$1" >"$_m_tmp/out" 2>&1 || { _m_block out "$_m_tmp/out"; _m_fail "systemctl $c $1 failed"; return; }; done
        _m_changed "$(echo $changes) $1"
        return
    fi
    # No systemd: a plain process tracked by its pidfile.
    [ -n "$5" ] || { _m_fail "no systemd on this node: set pidfile (and command) for service $1"; return; }
    running=0
    if [ -s "$5" ] && kill -0 "$(cat "$5")" 2>/dev/null; then running=1; fi
    case $2 in
        started) [ "$running" = 1 ] && { _m_ok "$1 is running"; return; } ;;
        stopped) [ "$running" = 0 ] && { _m_ok "$1 is stopped"; return; } ;;
    esac
    if [ "$_m_check" = 1 ]; then _m_changed "would $2 $1"; return; fi
    if [ "$running" = 1 ] && [ "$2" != started ]; then
        # The pidfile may name a `sh -c` wrapper: stop what it started too.
        pkill -P "$(cat "$5")" 2>/dev/null
        kill "$(cat "$5")" 2>/dev/null
        i=0; while kill -0 "$(cat "$5")" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        rm -f "$5"
    fi
    if [ "$2" != stopped ]; then
        [ -n "$4" ] || { _m_fail "service $1 has no command to start it"; return; }
        nohup sh -c "$4" </dev/null >/dev/null 2>&1 &
        echo $! >"$5" || { _m_fail "cannot write $5"; return; }
    fi
    _m_changed "$2 $1"
}

_m_user() { # name state system home shell
    if id -u "$1" >/dev/null 2>&1; then
        if [ "$2" = absent ]; then
            if [ "$_m_check" = 1 ]; then _m_changed "would remove user $1"; return; fi
            userdel "$1" >"$_m_tmp/out" 2>&1 || { _m_block out "$_m_tmp/out"; _m_fail "userdel $1 failed"; return; }
            _m_changed "removed user $1"; return
        fi
        _m_ok "user $1 exists"; return
    fi
    [ "$2" = absent ] && { _m_ok "user $1 is absent"; return; }
    if [ "$_m_check" = 1 ]; then _m_changed "would create user $1"; return; fi
    name=$1 system=$3 home=$4 shell=$5
    # Build the argument list with set --: values never go through word splitting.
    if command -v useradd >/dev/null 2>&1; then
        set -- -M
        [ "$system" = 1 ] && set -- "$@" -r
        [ -n "$home" ] && set -- "$@" -d "$home"
        [ -n "$shell" ] && set -- "$@" -s "$shell"
        useradd "$@" -- "$name" >"$_m_tmp/out" 2>&1
    else
        set -- -D -H
        [ "$system" = 1 ] && set -- "$@" -S
        [ -n "$home" ] && set -- "$@" -h "$home"
        [ -n "$shell" ] && set -- "$@" -s "$shell"
        adduser "$@" "$name" >"$_m_tmp/out" 2>&1
    fi || { _m_block out "$_m_tmp/out"; _m_fail "cannot create user $name"; return; }
    _m_changed "created user $name"
}

_m_sysctl() { # key value persist-file
    path=/proc/sys/$(printf '%s' "$1" | tr . /)
    [ -r "$path" ] || { _m_fail "unknown sysctl $1"; return; }
    cur=$(tr -s '\t ' '  ' <"$path")
    changes=
    [ "$cur" = "$2" ] || changes="runtime"
    if [ -n "$3" ]; then
        grep -qxF "$1 = $2" "$3" 2>/dev/null || changes="$changes persistent"
    fi
    [ -n "$changes" ] || { _m_ok "$1 = $2"; return; }
    if [ "$_m_check" = 1 ]; then _m_changed "would set $1 = $2 ($(echo $changes))"; return; fi
    case $changes in *runtime*) printf '%s\n' "$2" >"$path" || { _m_fail "cannot set $1"; return; } ;; esac
    if [ -n "$3" ]; then
        mkdir -p "$(dirname "$3")" && touch "$3" &&
            M_KEY=$1 awk 'BEGIN { k = ENVIRON["M_KEY"] } { split($0, f, "="); g = f[1]; gsub(/[ \t]/, "", g); if (g != k) print }' "$3" >"$_m_tmp/new" &&
            printf '%s = %s\n' "$1" "$2" >>"$_m_tmp/new" && cat "$_m_tmp/new" >"$3" || { _m_fail "cannot write $3"; return; }
    fi
    _m_changed "$1 = $2"
}

_m_checksum() { # path sha256
    if [ ! -f "$1" ] && [ "$_m_check" = 1 ]; then
        _m_status=skipped; _m_msg="$1 is not there yet; checked after the tasks before it run"; return
    fi
    [ -f "$1" ] || { _m_fail "$1 does not exist"; return; }
    if command -v sha256sum >/dev/null 2>&1; then sum=$(sha256sum "$1" | cut -d' ' -f1)
    else sum=$(openssl dgst -sha256 -r "$1" 2>/dev/null | cut -d' ' -f1); fi
    [ "$sum" = "$2" ] && _m_ok "$1 sha256 verified" || _m_fail "$1 has sha256 $sum, expected $2"
}

# Run one task's call as another user (become_user), with this library.
_m_as() { # user call
    if [ "$(id -un)" = "$1" ]; then eval "$2"; return; fi
    { printf '%s\n' "$_m_lib"; printf '_m_nonce=%s _m_check=%s _m_diff=%s _m_pkg=%s _m_init=%s\n' \
        "$_m_nonce" "$_m_check" "$_m_diff" "$_m_pkg" "$_m_init"
      printf '_m_tmp=$(mktemp -d); _m_status=ok; _m_msg=\n%s\n_m_emit status "$_m_status" "$_m_msg"; rm -rf "$_m_tmp"\n' "$2"
    } | sudo -n -u "$1" -- /bin/sh -s >"$_m_tmp/as" 2>&1
    # The inner shell reported its status as a marker; relay everything else.
    _m_status=failed; _m_msg="could not run as $1 (sudo -n -u $1 failed)"
    while IFS= read -r l; do
        case $l in
            "$(printf '\036M')$_m_nonce status "*)
                rest=${l#*status }; _m_status=${rest%% *}; _m_msg=${rest#"$_m_status"}; _m_msg=${_m_msg# } ;;
            *) printf '%s\n' "$l" ;;
        esac
    done <"$_m_tmp/as"
}
