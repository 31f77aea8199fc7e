# shellcheck shell=sh
# hardening/lib.sh - helper library for maestro's hardening rules (POSIX sh / dash).
#
# The engine loads this file in front of every rule snippet; each snippet then runs in
# its own subshell as root with stdin from /dev/null. Conventions:
#   * every function is named _h_* and every global _H_*;
#   * function bodies are subshells "( ... )", so helpers never leak variables into a
#     rule or into each other, and "exit" inside a helper only ends that helper;
#   * *_check / *_expect helpers (audits) print ONE short line saying what is wrong and
#     return 1, or print nothing and return 0;
#   * setters are idempotent (they rewrite a file only when its content changes, and
#     reload a daemon only after a change) and report failures on stderr, returning 1;
#   * nothing here uses eval; every expansion is quoted unless splitting is intended.

_H_TAG=maestro-hardening
_H_SSHD_CONFIG=/etc/ssh/sshd_config
_H_SYSCTL_FILE=/etc/sysctl.d/60-maestro-hardening.conf
_H_LOGIN_DEFS=/etc/login.defs
_H_JOURNALD_DROPIN=/etc/systemd/journald.conf.d/60-maestro-hardening.conf
_H_RSYSLOG_DROPIN=/etc/rsyslog.d/00-maestro-hardening.conf

# SSH algorithm lists. _SET is what remediation writes (all accepted by OpenSSH 9.2 and
# including everything a russh 0.65 client negotiates by default); _OK is what an audit
# accepts (the same plus newer names that only later OpenSSH releases know).
_H_SSH_CIPHERS_SET=chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr
_H_SSH_CIPHERS_OK=$_H_SSH_CIPHERS_SET
_H_SSH_MACS_SET=hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com
_H_SSH_MACS_OK=$_H_SSH_MACS_SET
_H_SSH_KEX_SET=sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group18-sha512,diffie-hellman-group16-sha512,diffie-hellman-group-exchange-sha256
_H_SSH_KEX_OK=$_H_SSH_KEX_SET,sntrup761x25519-sha512,mlkem768x25519-sha256

# Non-login sessions (and sudo without secure_path) may lack the sbin directories.
case ":${PATH:-}:" in
    *:/usr/sbin:*) ;;
    *) PATH=${PATH:+$PATH:}/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin; export PATH ;;
esac

# ---------------------------------------------------------------------------
# generic helpers

# _h_die MSG... : print "maestro-hardening: MSG" on stderr and exit 1 (ends the enclosing
# helper's subshell, or the rule when called from a snippet).
_h_die() {
    printf '%s: %s\n' "$_H_TAG" "$*" >&2
    exit 1
}

# _h_unknown MSG... : the check cannot be made on this node: print MSG (why) and exit 3,
# which the engine reports as `unknown` (never as compliant).
_h_unknown() {
    printf '%s\n' "$*"
    exit 3
}

# _h_have CMD : true if CMD is on PATH.
_h_have() {
    command -v "$1" >/dev/null 2>&1
}

# _h_lower STRING : STRING in lower case.
_h_lower() (
    printf '%s\n' "$1" | tr '[:upper:]' '[:lower:]'
)

# _h_tmpdir : create a private temporary directory and print its path.
_h_tmpdir() (
    mktemp -d "${TMPDIR:-/tmp}/maestro-h.XXXXXX" || _h_die "cannot create a temporary directory"
)

# _h_systemd : true when systemd is the running init.
_h_systemd() {
    [ -d /run/systemd/system ]
}

# _h_replace TARGET NEWFILE [MODE] : give TARGET the content of NEWFILE, atomically
# (temporary file in the same directory, then rename), keeping TARGET's mode, owner and
# group, and writing through a symlink to its target. Does nothing if the content is
# already identical. MODE (default 0644) is used only when TARGET does not exist yet.
_h_replace() (
    t=$1 n=$2
    if [ -L "$t" ]; then
        t=$(readlink -f -- "$t") || _h_die "cannot resolve symlink $1"
    fi
    if [ -e "$t" ] && cmp -s -- "$n" "$t"; then
        exit 0
    fi
    d=$(dirname -- "$t")
    [ -d "$d" ] || mkdir -p -- "$d" || _h_die "cannot create $d"
    tmp=$(mktemp "$d/.$_H_TAG.XXXXXX") || _h_die "cannot create a temporary file in $d"
    if [ -e "$t" ]; then
        cp -p -- "$t" "$tmp" || { rm -f -- "$tmp"; _h_die "cannot copy $t"; }
    else
        chmod "${3:-0644}" "$tmp" || { rm -f -- "$tmp"; _h_die "cannot chmod $tmp"; }
    fi
    if ! cat -- "$n" >"$tmp" || ! mv -f -- "$tmp" "$t"; then
        rm -f -- "$tmp"
        _h_die "cannot write $t"
    fi
)

# _h_conf_edit FILE KEY LINE MODE : print FILE with exactly one active KEY line, LINE.
#   MODE "plain" (login.defs, sysctl files): KEY is case-sensitive; the first active KEY
#     line is replaced, later ones dropped; otherwise LINE is appended.
#   MODE "sshd": KEY is case-insensitive ("Key value" or "Key=value"); only the global
#     part before the first Match block is considered (Match blocks are left alone); the
#     first active KEY line is replaced, or else the first commented-out one ("#Key ..."),
#     or else LINE goes in front of the first active line (so before any Match block).
#     LINE is always placed above the first Include, because OpenSSH keeps the FIRST
#     value it sees and included files would otherwise win.
# A missing FILE is treated as empty.
_h_conf_edit() (
    f=$1
    [ -f "$f" ] || f=/dev/null
    awk -v key="$2" -v line="$3" -v mode="$4" '
        function parse(s,    t, w) {
            t = s
            cm = 0
            sub(/^[ \t]+/, "", t)
            if (substr(t, 1, 1) == "#") { cm = 1; sub(/^#+[ \t]*/, "", t) }
            if (t == "") return ""
            split(t, w, /[ \t=]/)
            return (mode == "sshd") ? tolower(w[1]) : w[1]
        }
        BEGIN { k = (mode == "sshd") ? tolower(key) : key }
        NR == FNR {
            if (stop) next
            x = parse($0)
            if (mode == "sshd" && !cm && x == "match") { if (!firstact) firstact = FNR; stop = 1; next }
            if (mode == "sshd" && !cm && x == "include" && !incl) incl = FNR
            if (x == k) {
                if (cm) { if (!firstcm) firstcm = FNR }
                else if (!firstkey) firstkey = FNR
            }
            if (!cm && x != "" && !firstact) firstact = FNR
            next
        }
        FNR == 1 {
            pos = 0; rep = 0
            if (firstkey) { pos = firstkey; rep = 1 }
            else if (mode == "sshd" && firstcm) { pos = firstcm; rep = 1 }
            else if (mode == "sshd" && firstact) pos = firstact
            if (incl && (!pos || incl < pos)) { pos = incl; rep = 0 }
        }
        {
            x = parse($0)
            if (mode == "sshd" && !cm && x == "match") inmatch = 1
            if (FNR == pos) { print line; if (rep) next }
            if (!inmatch && !cm && x == k) next
            print
        }
        END { if (!pos) print line }
    ' "$f" "$f"
)

# _h_confd_list SUFFIX DIR... : files DIR/*SUFFIX ordered the way systemd and procps
# read drop-in directories: by file name; for equal names the earlier DIR wins.
_h_confd_list() (
    sfx=$1
    shift
    tab=$(printf '\t')
    i=0
    for d in "$@"; do
        i=$((i + 1))
        for f in "$d"/*"$sfx"; do
            [ -f "$f" ] || continue
            printf '%s\t%s\t%s\n' "${f##*/}" "$i" "$f"
        done
    done | LC_ALL=C sort -t "$tab" -k1,1 -k2,2n | awk -F '\t' '$1 != last { print $3; last = $1 }'
)

# ---------------------------------------------------------------------------
# OpenSSH server

# _h_sshd_privsep_dir : sshd -T/-t refuse to run without /run/sshd, which normally only
# exists while the service runs; create it the way the service would.
_h_sshd_privsep_dir() {
    [ -d /run/sshd ] || mkdir -m 0755 /run/sshd 2>/dev/null || :
}

# _h_sshd_T : the effective global server configuration (sshd -T). On failure prints
# sshd's first error line on stderr and returns 1.
_h_sshd_T() (
    _h_have sshd || _h_die "sshd is not installed"
    _h_sshd_privsep_dir
    out=$(sshd -T -f "$_H_SSHD_CONFIG" 2>&1) && { printf '%s\n' "$out"; exit 0; }
    printf '%s\n' "$out" | grep -v '^[a-z0-9]* ' | head -n 1 >&2
    exit 1
)

# _h_sshd_get KEY : effective value of KEY (any case, e.g. permitrootlogin) from sshd -T;
# empty if sshd does not know KEY. Returns 1 if sshd -T fails.
_h_sshd_get() (
    k=$(_h_lower "$1")
    conf=$(_h_sshd_T 2>/dev/null) || exit 1
    printf '%s\n' "$conf" | awk -v k="$k" '$1 == k { sub(/^[^ \t]+[ \t]+/, ""); print; exit }'
)

# _h_sshd_broken : audit line for a configuration that sshd -T cannot read.
_h_sshd_broken() (
    err=$(_h_sshd_T 2>&1 >/dev/null)
    printf 'sshd -T failed: %s\n' "${err:-unknown error}"
)

# _h_sshd_expect KEY VALUE... : audit: effective KEY is one of VALUEs (case-insensitive).
_h_sshd_expect() (
    name=$1
    shift
    v=$(_h_sshd_get "$name") || { _h_sshd_broken; exit 1; }
    lv=$(_h_lower "$v")
    for want in "$@"; do
        [ "$lv" = "$(_h_lower "$want")" ] && exit 0
    done
    printf 'sshd %s is "%s" (want %s)\n' "$name" "$v" "$(printf '%s\n' "$*" | sed 's/ / or /g')"
    exit 1
)

# _h_sshd_range KEY MIN MAX : audit: effective KEY is an integer in [MIN, MAX].
_h_sshd_range() (
    v=$(_h_sshd_get "$1") || { _h_sshd_broken; exit 1; }
    case $v in
        '' | *[!0-9]*) printf 'sshd %s is "%s" (want %s..%s)\n' "$1" "$v" "$2" "$3"; exit 1 ;;
    esac
    if [ "$v" -lt "$2" ] || [ "$v" -gt "$3" ]; then
        printf 'sshd %s is %s (want %s..%s)\n' "$1" "$v" "$2" "$3"
        exit 1
    fi
)

# _h_sshd_algos KEY ALLOWED : audit: every algorithm in the effective comma list KEY
# (Ciphers, MACs, KexAlgorithms) is in the comma list ALLOWED.
_h_sshd_algos() (
    v=$(_h_sshd_get "$1") || { _h_sshd_broken; exit 1; }
    [ -n "$v" ] || { printf 'sshd %s: no value reported by sshd -T\n' "$1"; exit 1; }
    bad=$(printf '%s\n' "$v" | tr ',' '\n' | awk -v ok="$2" '
        BEGIN { n = split(ok, a, ","); for (i = 1; i <= n; i++) allow[a[i]] = 1 }
        NF && !($0 in allow) { printf "%s%s", sep, $0; sep = "," }')
    [ -z "$bad" ] && exit 0
    printf 'sshd %s allows weak or unapproved: %s\n' "$1" "$bad"
    exit 1
)

# _h_sshd_includes : files included from the global part of sshd_config (one per line).
_h_sshd_includes() (
    [ -f "$_H_SSHD_CONFIG" ] || exit 0
    awk '{ k = tolower($1) } k == "match" { exit } k == "include" { for (i = 2; i <= NF; i++) print $i }' \
        "$_H_SSHD_CONFIG" | while IFS= read -r pat; do
        case $pat in
            /*) ;;
            *) pat=/etc/ssh/$pat ;;
        esac
        # shellcheck disable=SC2086  # the pattern is meant to be globbed
        for f in $pat; do
            [ -f "$f" ] && printf '%s\n' "$f"
        done
    done
)

# _h_sshd_comment_key FILE KEY : print FILE with its active KEY lines (global part, any
# case) commented out.
_h_sshd_comment_key() (
    awk -v key="$(_h_lower "$2")" -v tag="$_H_TAG" '
        { t = $0; sub(/^[ \t]+/, "", t); split(t, w, /[ \t=]/); k = tolower(w[1]) }
        k == "match" { m = 1 }
        !m && k == key { print "# " tag " (set in sshd_config): " $0; next }
        { print }' "$1"
)

# _h_sshd_pid : PID of the running listener sshd, from the PidFile sshd -T reports.
_h_sshd_pid() (
    pf=$(_h_sshd_get pidfile) || exit 1
    [ -n "$pf" ] && [ "$pf" != none ] && [ -r "$pf" ] || exit 1
    pid=$(head -n 1 "$pf")
    case $pid in
        '' | *[!0-9]*) exit 1 ;;
    esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] || exit 1
    printf '%s\n' "$pid"
)

# _h_sshd_ready PID : true when sshd PID has its SIGHUP handler installed (it installs it
# after re-exec and listen, just before rewriting its PidFile). A SIGHUP that arrives
# before that would kill sshd instead of reloading it.
_h_sshd_ready() (
    m=$(awk '$1 == "SigCgt:" { print $2 }' "/proc/$1/status" 2>/dev/null)
    case $m in
        *[13579bdfBDF]) exit 0 ;;
    esac
    exit 1
)

# _h_sshd_sockets PID : the socket inodes PID holds, space separated.
_h_sshd_sockets() (
    for fd in /proc/"$1"/fd/*; do
        l=$(readlink "$fd" 2>/dev/null) || continue
        case $l in
            socket:*) printf '%s ' "$l" ;;
        esac
    done
)

# _h_mtime FILE : modification time of FILE as precisely as stat reports it.
_h_mtime() (
    stat -c %y -- "$1" 2>/dev/null
)

# _h_sshd_wait_ready PID : wait up to 10 s until sshd PID can take a SIGHUP.
_h_sshd_wait_ready() (
    i=0
    while [ "$i" -lt 100 ]; do
        _h_sshd_ready "$1" && exit 0
        [ -d "/proc/$1" ] || exit 1
        sleep 0.1 2>/dev/null || sleep 1
        i=$((i + 1))
    done
    exit 1
)

# _h_sshd_wait_reexec PID PIDFILE SOCKETS MTIME : after a SIGHUP, wait up to 10 s until
# the re-executed sshd PID is up: its SIGHUP handler is installed again and either it
# holds only new sockets (it closes and re-binds its listeners when it re-executes) or it
# has rewritten PIDFILE (which it does right after installing its handlers).
_h_sshd_wait_reexec() (
    pid=$1 pf=$2 s0=$3 m0=$4
    i=0
    while [ "$i" -lt 100 ]; do
        [ -d "/proc/$pid" ] || exit 1
        if _h_sshd_ready "$pid"; then
            if [ -n "$pf" ] && [ -n "$m0" ] && [ "$(_h_mtime "$pf")" != "$m0" ]; then
                exit 0
            fi
            s=$(_h_sshd_sockets "$pid")
            if [ -n "$s" ]; then
                fresh=1
                for x in $s; do
                    case " $s0 " in
                        *" $x "*) fresh=0 ;;
                    esac
                done
                [ "$fresh" = 1 ] && exit 0
            fi
        fi
        sleep 0.05 2>/dev/null || sleep 1
        i=$((i + 1))
    done
    exit 1
)

# _h_sshd_reload : make the running sshd re-read its configuration, keeping existing
# sessions. systemd: "systemctl reload ssh || systemctl reload sshd"; otherwise SIGHUP to
# the PID in sshd's PidFile. Waits until the daemon is back (listening, handlers set),
# so that consecutive reloads cannot hit it while it re-executes itself (a SIGHUP that
# arrives before sshd has installed its handler would terminate it).
_h_sshd_reload() (
    pf=$(_h_sshd_get pidfile) || pf=""
    pid=$(_h_sshd_pid) || pid=""
    how=""
    if _h_systemd && { systemctl is-active --quiet ssh.service 2>/dev/null ||
        systemctl is-active --quiet sshd.service 2>/dev/null; }; then
        how=systemd
    elif [ -n "$pid" ]; then
        how=hup
    else
        exit 0 # no running daemon found: it reads the new file when it starts
    fi
    s0="" m0=""
    if [ -n "$pid" ]; then
        _h_sshd_wait_ready "$pid" || _h_die "sshd (pid $pid) is not ready for a reload"
        s0=$(_h_sshd_sockets "$pid")
        m0=$(_h_mtime "$pf")
    fi
    if [ "$how" = systemd ]; then
        systemctl reload ssh 2>/dev/null || systemctl reload sshd || _h_die "systemctl reload ssh/sshd failed"
    else
        kill -HUP "$pid" || _h_die "cannot send SIGHUP to sshd (pid $pid)"
    fi
    if [ -n "$pid" ]; then
        _h_sshd_wait_reexec "$pid" "$pf" "$s0" "$m0" ||
            _h_die "sshd (pid $pid) did not come back within 10 s after the reload"
    fi
)

# _h_sshd_set KEY VALUE : make sshd_config contain exactly one active "KEY VALUE" line
# (see _h_conf_edit: replaces an active or commented line, else adds it near the top;
# always above Include and Match), comment out KEY in the files sshd_config includes,
# validate with sshd -t (restoring every file on failure) and reload sshd.
_h_sshd_set() (
    key=$1 val=$2 cfg=$_H_SSHD_CONFIG
    if [ -z "$key" ] || [ -z "$val" ]; then
        _h_die "usage: _h_sshd_set KEY VALUE"
    fi
    [ -f "$cfg" ] || _h_die "$cfg does not exist"
    _h_have sshd || _h_die "sshd is not installed"
    _h_sshd_privsep_dir
    w=$(_h_tmpdir) || exit 1
    : >"$w/list"
    _h_conf_edit "$cfg" "$key" "$key $val" sshd >"$w/new.0" || { rm -rf "$w"; _h_die "cannot edit $cfg"; }
    cmp -s "$w/new.0" "$cfg" || printf '0 %s\n' "$cfg" >>"$w/list"
    _h_sshd_includes >"$w/includes"
    i=0
    while IFS= read -r f; do
        i=$((i + 1))
        _h_sshd_comment_key "$f" "$key" >"$w/new.$i" || { rm -rf "$w"; _h_die "cannot edit $f"; }
        cmp -s "$w/new.$i" "$f" || printf '%s %s\n' "$i" "$f" >>"$w/list"
    done <"$w/includes"
    if [ ! -s "$w/list" ]; then
        rm -rf "$w"
        exit 0 # already exactly as wanted
    fi
    ok=1
    while read -r i f; do
        cp -p -- "$f" "$w/orig.$i" || { ok=0; break; }
        printf '%s %s\n' "$i" "$f" >>"$w/saved"
        _h_replace "$f" "$w/new.$i" || { ok=0; break; }
    done <"$w/list"
    if [ "$ok" = 1 ]; then
        err=$(sshd -t -f "$cfg" 2>&1) || ok=0
        [ "$ok" = 1 ] || err="sshd -t rejected '$key $val': $(printf '%s\n' "$err" | head -n 1)"
    else
        err="cannot update the sshd configuration"
    fi
    if [ "$ok" != 1 ]; then
        if [ -f "$w/saved" ]; then
            while read -r i f; do
                _h_replace "$f" "$w/orig.$i" || printf '%s: could not restore %s from %s\n' "$_H_TAG" "$f" "$w/orig.$i" >&2
            done <"$w/saved"
        fi
        rm -rf "$w"
        _h_die "$err; previous configuration restored"
    fi
    rm -rf "$w"
    _h_sshd_reload
)

# _h_sshd_hostkeys : host private key files (sshd -T hostkey lines and
# /etc/ssh/ssh_host_*_key), one per line.
_h_sshd_hostkeys() (
    {
        _h_sshd_T 2>/dev/null | awk '$1 == "hostkey" { print $2 }'
        for f in /etc/ssh/ssh_host_*_key; do
            [ -f "$f" ] && printf '%s\n' "$f"
        done
    } | awk '!seen[$0]++'
)

# _h_banner_leaks FILE : true if FILE reveals the OS (getty escapes \m \r \s \v, or
# the distribution ID from /etc/os-release, such as "Debian").
_h_banner_leaks() (
    grep -q '\\[mrsv]' "$1" 2>/dev/null && exit 0
    id=$(awk -F= '$1 == "ID" { gsub(/"/, "", $2); print $2 }' /etc/os-release 2>/dev/null)
    [ -n "$id" ] && grep -qiwF -- "$id" "$1" 2>/dev/null
)

# _h_sshd_banner_check : audit: a Banner is configured; its file is not empty and does not
# reveal the OS.
_h_sshd_banner_check() (
    b=$(_h_sshd_get banner) || { _h_sshd_broken; exit 1; }
    case $b in
        '' | none) echo "sshd Banner is not set"; exit 1 ;;
    esac
    [ -s "$b" ] || { printf 'sshd Banner %s is missing or empty\n' "$b"; exit 1; }
    if _h_banner_leaks "$b"; then
        printf 'sshd Banner %s reveals the operating system\n' "$b"
        exit 1
    fi
)

# _h_sshd_banner_set FILE : write a legal warning to FILE unless it already holds a
# non-empty text that does not reveal the OS, then set Banner FILE.
_h_sshd_banner_set() (
    f=$1
    if [ ! -s "$f" ] || _h_banner_leaks "$f"; then
        w=$(_h_tmpdir) || exit 1
        printf '%s\n' \
            "Authorized access only. This system is monitored; activity may be logged and" \
            "reported. Disconnect now if you are not an authorized user." >"$w/banner"
        _h_replace "$f" "$w/banner" 0644 || { rm -rf "$w"; exit 1; }
        rm -rf "$w"
    fi
    _h_sshd_set Banner "$f"
)

# ---------------------------------------------------------------------------
# kernel parameters

# _h_sysctl_path KEY : /proc/sys path of KEY (net.ipv4.tcp_syncookies -> .../tcp_syncookies).
_h_sysctl_path() (
    printf '/proc/sys/%s\n' "$(printf '%s' "$1" | tr . /)"
)

# _h_sysctl_get KEY : current (runtime) value, whitespace normalised; 1 if no such key.
_h_sysctl_get() (
    p=$(_h_sysctl_path "$1")
    [ -r "$p" ] || exit 1
    awk '{ $1 = $1; print }' "$p"
)

# _h_sysctl_files : every sysctl configuration file, in the order the boot applies them
# (last assignment wins).
_h_sysctl_files() (
    _h_confd_list .conf /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d
    [ -f /etc/sysctl.conf ] && echo /etc/sysctl.conf
    :
)

# _h_sysctl_file_value FILE KEY : the last value FILE assigns to KEY; 1 if none.
_h_sysctl_file_value() (
    awk -v key="$2" '
        { t = $0; sub(/^[ \t]+/, "", t) }
        t == "" || t ~ /^[#;]/ { next }
        {
            if (substr(t, 1, 1) == "-") t = substr(t, 2)
            i = index(t, "="); if (!i) next
            k = substr(t, 1, i - 1); v = substr(t, i + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", k); gsub(/^[ \t]+|[ \t]+$/, "", v)
            gsub("/", ".", k)
            if (k == key) { gsub(/[ \t]+/, " ", v); val = v; found = 1 }
        }
        END { if (found) print val; exit !found }' "$1"
)

# _h_sysctl_boot KEY : "FILE<TAB>VALUE" of the assignment that wins at boot; empty if none.
_h_sysctl_boot() (
    _h_sysctl_files | {
        res=""
        while IFS= read -r f; do
            v=$(_h_sysctl_file_value "$f" "$1") && res=$(printf '%s\t%s' "$f" "$v")
        done
        [ -n "$res" ] && printf '%s\n' "$res"
        :
    }
)

# _h_sysctl_check KEY VALUE : audit: KEY is VALUE now and the configuration applied at
# boot sets it to VALUE too.
_h_sysctl_check() (
    cur=$(_h_sysctl_get "$1") || _h_unknown "$1 does not exist on this kernel: the setting cannot be checked"
    [ "$cur" = "$2" ] || { printf '%s = %s (want %s)\n' "$1" "$cur" "$2"; exit 1; }
    b=$(_h_sysctl_boot "$1")
    [ -n "$b" ] || { printf '%s = %s now, but no sysctl.d file sets it (not persistent)\n' "$1" "$2"; exit 1; }
    tab=$(printf '\t')
    bf=${b%%"$tab"*} bv=${b#*"$tab"}
    [ "$bv" = "$2" ] || { printf '%s = %s now, but %s sets %s at boot\n' "$1" "$2" "$bf" "$bv"; exit 1; }
)

# _h_sysctl_set KEY VALUE : set KEY at runtime and persistently: one "KEY = VALUE" line in
# /etc/sysctl.d/60-maestro-hardening.conf (replaced, never duplicated); assignments in
# other /etc sysctl files that would override it at boot are commented out.
_h_sysctl_set() (
    key=$1 want=$2
    p=$(_h_sysctl_path "$key")
    [ -e "$p" ] || _h_die "sysctl $key does not exist on this kernel"
    cur=$(_h_sysctl_get "$key")
    if [ "$cur" != "$want" ]; then
        printf '%s\n' "$want" 2>/dev/null >"$p" || _h_die "cannot set $key = $want (read-only /proc/sys?)"
        cur=$(_h_sysctl_get "$key")
        [ "$cur" = "$want" ] || _h_die "$key is $cur after writing $want"
    fi
    w=$(_h_tmpdir) || exit 1
    if [ -f "$_H_SYSCTL_FILE" ]; then
        _h_conf_edit "$_H_SYSCTL_FILE" "$key" "$key = $want" plain >"$w/new"
    else
        {
            echo "# Kernel parameters set by maestro's hardening baseline; one line per key."
            printf '%s = %s\n' "$key" "$want"
        } >"$w/new"
    fi
    _h_replace "$_H_SYSCTL_FILE" "$w/new" 0644 || { rm -rf "$w"; exit 1; }
    tab=$(printf '\t')
    n=0
    while :; do
        b=$(_h_sysctl_boot "$key")
        bf=${b%%"$tab"*} bv=${b#*"$tab"}
        [ "$bv" = "$want" ] && break
        n=$((n + 1))
        case $bf in
            /etc/*) [ "$n" -le 20 ] ;;
            *) false ;;
        esac || { rm -rf "$w"; _h_die "$bf sets $key = $bv at boot and overrides $_H_SYSCTL_FILE"; }
        awk -v key="$key" -v tag="$_H_TAG" -v ours="$_H_SYSCTL_FILE" '
            { t = $0; sub(/^[ \t]+/, "", t); if (substr(t, 1, 1) == "-") t = substr(t, 2)
              i = index(t, "="); k = i ? substr(t, 1, i - 1) : ""
              gsub(/^[ \t]+|[ \t]+$/, "", k); gsub("/", ".", k) }
            t !~ /^[#;]/ && k == key { print "# " tag " (set in " ours "): " $0; next }
            { print }' "$bf" >"$w/other" || { rm -rf "$w"; _h_die "cannot read $bf"; }
        _h_replace "$bf" "$w/other" || { rm -rf "$w"; exit 1; }
    done
    rm -rf "$w"
)

# _h_sysctl_ensure KEY VALUE : _h_sysctl_set only when _h_sysctl_check fails (so an
# already compliant key, e.g. one persisted by a vendor file, is left exactly as it is).
_h_sysctl_ensure() (
    _h_sysctl_check "$1" "$2" >/dev/null || _h_sysctl_set "$1" "$2"
)

# ---------------------------------------------------------------------------
# file permissions

# _h_perm_check PATH MODE OWNER GROUP : audit: PATH has no permission bits beyond MODE
# (octal; stricter is fine), its owner is OWNER and its group one of GROUP (comma list,
# e.g. "shadow,root"). Prints what differs on one line. A missing PATH is compliant.
_h_perm_check() (
    p=$1 want=$2
    [ -e "$p" ] || exit 0
    st=$(stat -L -c '%a %U %G %u %g' -- "$p") || exit 1
    read -r mode user group uid gid <<EOF
$st
EOF
    msg=""
    extra=$((0$mode & ~0$want))
    [ "$extra" -eq 0 ] || msg="mode $(printf '%04o' "$((0$mode))") (want $(printf '%04o' "$((0$want))") or stricter)"
    if [ "$user" != "$3" ] && [ "$uid" != "$3" ]; then
        msg="${msg:+$msg, }owner $user (want $3)"
    fi
    case ",$4," in
        *",$group,"* | *",$gid,"*) ;;
        *) msg="${msg:+$msg, }group $group (want $(printf '%s\n' "$4" | sed 's/,/ or /g'))" ;;
    esac
    [ -z "$msg" ] && exit 0
    printf '%s: %s\n' "$p" "$msg"
    exit 1
)

# _h_perm_set PATH MODE OWNER GROUP : fix what _h_perm_check reports: clear the mode bits
# beyond MODE (keeping stricter settings), chown OWNER and, unless the group already is
# one of GROUP, chgrp to the first group of GROUP that exists. Missing PATH: nothing to do.
_h_perm_set() (
    p=$1 want=$2
    [ -e "$p" ] || exit 0
    st=$(stat -L -c '%a %U %G %u %g' -- "$p") || exit 1
    read -r mode user group uid gid <<EOF
$st
EOF
    new=$((0$mode & 0$want))
    if [ "$new" -ne "$((0$mode))" ]; then
        chmod "0$(printf '%04o' "$new")" "$p" || _h_die "cannot chmod $p"
    fi
    if [ "$user" != "$3" ] && [ "$uid" != "$3" ]; then
        chown "$3" "$p" || _h_die "cannot chown $3 $p"
    fi
    case ",$4," in
        *",$group,"* | *",$gid,"*) ;;
        *)
            g=""
            for c in $(printf '%s\n' "$4" | tr ',' ' '); do
                if getent group "$c" >/dev/null 2>&1 || grep -q "^$c:" /etc/group; then
                    g=$c
                    break
                fi
            done
            [ -n "$g" ] || _h_die "none of the groups $4 exists for $p"
            chgrp "$g" "$p" || _h_die "cannot chgrp $g $p"
            ;;
    esac
)

# _h_perms_check MODE OWNER GROUP PATH... : _h_perm_check for several paths; one line
# (the first offender, plus how many more).
_h_perms_check() (
    mode=$1 owner=$2 group=$3
    shift 3
    first="" n=0
    for p in "$@"; do
        if ! m=$(_h_perm_check "$p" "$mode" "$owner" "$group"); then
            n=$((n + 1))
            [ -n "$first" ] || first=$m
        fi
    done
    [ "$n" -eq 0 ] && exit 0
    if [ "$n" -gt 1 ]; then
        printf '%s (+%s more)\n' "$first" "$((n - 1))"
    else
        printf '%s\n' "$first"
    fi
    exit 1
)

# _h_perms_set MODE OWNER GROUP PATH... : _h_perm_set for several paths.
_h_perms_set() (
    mode=$1 owner=$2 group=$3
    shift 3
    rc=0
    for p in "$@"; do
        _h_perm_set "$p" "$mode" "$owner" "$group" || rc=1
    done
    exit "$rc"
)

# _h_world_writable DIR : world-writable files and directories under DIR (same file
# system only), one per line.
_h_world_writable() (
    find "$1" -xdev \( -type f -o -type d \) -perm -0002 -print 2>/dev/null
)

# _h_world_writable_check DIR : audit: nothing under DIR is world-writable.
_h_world_writable_check() (
    l=$(_h_world_writable "$1")
    [ -z "$l" ] && exit 0
    n=$(printf '%s\n' "$l" | wc -l)
    printf '%s world-writable path(s) under %s, e.g. %s\n' "$((n))" "$1" "$(printf '%s\n' "$l" | head -n 1)"
    exit 1
)

# _h_world_writable_fix DIR : remove the world-write bit from those paths.
_h_world_writable_fix() (
    _h_world_writable "$1" | {
        rc=0
        while IFS= read -r p; do
            chmod o-w "$p" || rc=1
        done
        exit "$rc"
    } || _h_die "could not chmod o-w every world-writable path under $1"
)

# ---------------------------------------------------------------------------
# services (systemd; without systemd these are no-ops and rules use applies)

# _h_unit_exists UNIT : systemd knows a unit file UNIT.
_h_unit_exists() {
    _h_systemd && [ -n "$(systemctl list-unit-files --no-legend "$1" 2>/dev/null)" ]
}

# _h_units_exist UNIT... : at least one of the UNITs exists.
_h_units_exist() (
    for u in "$@"; do
        _h_unit_exists "$u" && exit 0
    done
    exit 1
)

# _h_service_active NAME... : true if one of the units is active (false without systemd).
_h_service_active() (
    _h_systemd || exit 1
    for u in "$@"; do
        systemctl is-active --quiet "$u" 2>/dev/null && exit 0
    done
    exit 1
)

# _h_service_enabled NAME : the unit is enabled (not just static) to start at boot.
_h_service_enabled() (
    _h_systemd || exit 1
    case $(systemctl is-enabled "$1" 2>/dev/null) in
        enabled | enabled-runtime) exit 0 ;;
    esac
    exit 1
)

# _h_services_off_check NAME... : audit: none of the units that exist is enabled or active.
_h_services_off_check() (
    _h_systemd || exit 0
    for u in "$@"; do
        _h_unit_exists "$u" || continue
        if _h_service_active "$u"; then
            printf '%s is active\n' "$u"
            exit 1
        fi
        if _h_service_enabled "$u"; then
            printf '%s is enabled\n' "$u"
            exit 1
        fi
    done
)

# _h_service_disable NAME... : stop and disable each unit that exists (no-op that
# succeeds without systemd).
_h_service_disable() (
    _h_systemd || exit 0
    for u in "$@"; do
        _h_unit_exists "$u" || continue
        if _h_service_enabled "$u"; then
            systemctl disable --quiet "$u" || _h_die "systemctl disable $u failed"
        fi
        if _h_service_active "$u"; then
            systemctl stop "$u" || _h_die "systemctl stop $u failed"
        fi
    done
)

# _h_service_on_check NAME : audit: the unit is enabled and active.
_h_service_on_check() (
    _h_service_enabled "$1" || { printf '%s is not enabled\n' "$1"; exit 1; }
    _h_service_active "$1" || { printf '%s is not running\n' "$1"; exit 1; }
)

# _h_service_enable NAME : enable and start the unit (no-op without systemd).
_h_service_enable() (
    _h_systemd || exit 0
    if ! _h_service_enabled "$1"; then
        systemctl enable --quiet "$1" || _h_die "systemctl enable $1 failed"
    fi
    if ! _h_service_active "$1"; then
        systemctl start "$1" || _h_die "systemctl start $1 failed"
    fi
)

# ---------------------------------------------------------------------------
# accounts and /etc/login.defs

# _h_login_defs_get KEY : the value of KEY in /etc/login.defs (last one wins); empty if unset.
_h_login_defs_get() (
    [ -f "$_H_LOGIN_DEFS" ] || exit 0
    awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$_H_LOGIN_DEFS"
)

# _h_login_defs_set KEY VALUE : exactly one active "KEY VALUE" line in /etc/login.defs
# (the first existing one is replaced, duplicates dropped, else appended).
_h_login_defs_set() (
    [ -f "$_H_LOGIN_DEFS" ] || _h_die "$_H_LOGIN_DEFS does not exist"
    w=$(_h_tmpdir) || exit 1
    _h_conf_edit "$_H_LOGIN_DEFS" "$1" "$(printf '%s\t%s' "$1" "$2")" plain >"$w/new" &&
        _h_replace "$_H_LOGIN_DEFS" "$w/new"
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# _h_login_defs_range KEY MIN MAX : audit: KEY is an integer in [MIN, MAX].
_h_login_defs_range() (
    v=$(_h_login_defs_get "$1")
    case $v in
        '') printf '%s is not set in %s (want %s..%s)\n' "$1" "$_H_LOGIN_DEFS" "$2" "$3"; exit 1 ;;
        *[!0-9]*) printf '%s is %s in %s (want %s..%s)\n' "$1" "$v" "$_H_LOGIN_DEFS" "$2" "$3"; exit 1 ;;
    esac
    if [ "$v" -lt "$2" ] || [ "$v" -gt "$3" ]; then
        printf '%s is %s in %s (want %s..%s)\n' "$1" "$v" "$_H_LOGIN_DEFS" "$2" "$3"
        exit 1
    fi
)

# _h_umask_check VALUE : audit: login.defs UMASK masks at least the bits of VALUE (e.g. 027).
_h_umask_check() (
    v=$(_h_login_defs_get UMASK)
    case $v in
        '') printf 'UMASK is not set in %s (want %s or stricter)\n' "$_H_LOGIN_DEFS" "$1"; exit 1 ;;
        *[!0-7]*) printf 'UMASK is "%s" in %s (want %s or stricter)\n' "$v" "$_H_LOGIN_DEFS" "$1"; exit 1 ;;
    esac
    if [ "$((0$v & 0$1))" -ne "$((0$1))" ]; then
        printf 'UMASK is %s in %s (want %s or stricter)\n' "$v" "$_H_LOGIN_DEFS" "$1"
        exit 1
    fi
)

# _h_empty_password_users : accounts whose /etc/shadow password field is empty.
_h_empty_password_users() (
    [ -r /etc/shadow ] || exit 0
    awk -F: '$1 != "" && $2 == "" { print $1 }' /etc/shadow
)

# _h_empty_password_check : audit: no account has an empty password field.
_h_empty_password_check() (
    u=$(_h_empty_password_users)
    [ -z "$u" ] && exit 0
    printf 'accounts with an empty password: %s\n' "$(printf '%s\n' "$u" | tr '\n' ' ' | sed 's/ $//')"
    exit 1
)

# _h_empty_password_fix : set those password fields to "*" (no password can match). "*"
# rather than "!" so that key-based SSH logins of the account keep working even with
# UsePAM no (OpenSSH treats "!..." as a locked account).
_h_empty_password_fix() (
    for u in $(_h_empty_password_users); do
        usermod -p '*' "$u" || _h_die "usermod -p '*' $u failed"
    done
)

# _h_uid0_users : accounts other than root with UID 0.
_h_uid0_users() (
    awk -F: '$3 == 0 && $1 != "root" { print $1 }' /etc/passwd
)

# _h_uid0_check : audit: root is the only UID 0 account.
_h_uid0_check() (
    u=$(_h_uid0_users)
    [ -z "$u" ] && exit 0
    printf 'accounts besides root with UID 0: %s\n' "$(printf '%s\n' "$u" | tr '\n' ' ' | sed 's/ $//')"
    exit 1
)

# ---------------------------------------------------------------------------
# logging

# _h_journald_storage : "FILE<TAB>VALUE" of the effective journald Storage= setting
# ("<TAB>auto" when nothing sets it).
_h_journald_storage() (
    {
        if [ -f /etc/systemd/journald.conf ]; then
            echo /etc/systemd/journald.conf
        elif [ -f /usr/lib/systemd/journald.conf ]; then
            echo /usr/lib/systemd/journald.conf
        fi
        _h_confd_list .conf /etc/systemd/journald.conf.d /run/systemd/journald.conf.d \
            /usr/local/lib/systemd/journald.conf.d /usr/lib/systemd/journald.conf.d
    } | {
        res=$(printf '\tauto')
        while IFS= read -r f; do
            v=$(awk -F= '{ k = $1; gsub(/^[ \t]+|[ \t]+$/, "", k) }
                k == "Storage" { v = $2; gsub(/^[ \t]+|[ \t]+$/, "", v); found = 1 }
                END { if (found) print v; exit !found }' "$f") && res=$(printf '%s\t%s' "$f" "$v")
        done
        printf '%s\n' "$res"
    }
)

# _h_journald_check VALUE : audit: the effective journald Storage= is VALUE.
_h_journald_check() (
    tab=$(printf '\t')
    r=$(_h_journald_storage)
    v=${r#*"$tab"} f=${r%%"$tab"*}
    [ "$v" = "$1" ] && exit 0
    printf 'journald Storage=%s%s (want %s)\n' "$v" "${f:+ in $f}" "$1"
    exit 1
)

# _h_journald_set VALUE : Storage=VALUE in /etc/systemd/journald.conf.d/60-maestro-hardening.conf,
# Storage= lines in other /etc files that override it commented out; for "persistent"
# /var/log/journal is created. journald is restarted (systemd only) after a change.
_h_journald_set() (
    tab=$(printf '\t')
    w=$(_h_tmpdir) || exit 1
    printf '# Set by maestro hardening.\n[Journal]\nStorage=%s\n' "$1" >"$w/dropin"
    changed=0
    cmp -s "$w/dropin" "$_H_JOURNALD_DROPIN" 2>/dev/null || changed=1
    _h_replace "$_H_JOURNALD_DROPIN" "$w/dropin" 0644 || { rm -rf "$w"; exit 1; }
    n=0
    while :; do
        r=$(_h_journald_storage)
        v=${r#*"$tab"} f=${r%%"$tab"*}
        [ "$v" = "$1" ] && break
        n=$((n + 1))
        case $f in
            /etc/*) [ "$n" -le 20 ] ;;
            *) false ;;
        esac || { rm -rf "$w"; _h_die "${f:-journald defaults} set Storage=$v and override $_H_JOURNALD_DROPIN"; }
        awk -v tag="$_H_TAG" '{ k = $0; sub(/=.*/, "", k); gsub(/^[ \t]+|[ \t]+$/, "", k) }
            k == "Storage" { print "# " tag ": " $0; next } { print }' "$f" >"$w/other" ||
            { rm -rf "$w"; _h_die "cannot read $f"; }
        _h_replace "$f" "$w/other" || { rm -rf "$w"; exit 1; }
        changed=1
    done
    rm -rf "$w"
    if [ "$1" = persistent ] && [ ! -d /var/log/journal ]; then
        mkdir -p /var/log/journal || _h_die "cannot create /var/log/journal"
        chgrp systemd-journal /var/log/journal 2>/dev/null && chmod 2755 /var/log/journal
        changed=1
    fi
    if [ "$changed" = 1 ] && _h_systemd; then
        systemctl restart systemd-journald.service || _h_die "systemctl restart systemd-journald failed"
    fi
    :
)

# _h_rsyslog_files : rsyslog's main configuration and its drop-ins.
_h_rsyslog_files() (
    [ -f /etc/rsyslog.conf ] && echo /etc/rsyslog.conf
    _h_confd_list .conf /etc/rsyslog.d
)

# shellcheck disable=SC2013,SC2016  # modes are single words; $FileCreateMode is literal
# _h_rsyslog_filemode_check MODE : audit: rsyslog sets $FileCreateMode, and every
# setting is MODE (e.g. 0640) or stricter.
_h_rsyslog_filemode_check() (
    found=0
    for f in $(_h_rsyslog_files); do
        for m in $(awk '$1 == "$FileCreateMode" { print $2 }' "$f"); do
            found=1
            case $m in
                *[!0-7]*) printf '%s: $FileCreateMode %s is not an octal mode\n' "$f" "$m"; exit 1 ;;
            esac
            if [ "$((0$m & ~0$1))" -ne 0 ]; then
                printf '%s: $FileCreateMode %s (want %s or stricter)\n' "$f" "$m" "$1"
                exit 1
            fi
        done
    done
    [ "$found" = 1 ] && exit 0
    printf 'rsyslog does not set $FileCreateMode (default 0644; want %s)\n' "$1"
    exit 1
)

# shellcheck disable=SC2013,SC2016  # as above
# _h_rsyslog_filemode_set MODE : rewrite too-permissive $FileCreateMode settings to MODE;
# if there is none, add one in /etc/rsyslog.d/00-maestro-hardening.conf. Restarts
# rsyslog (systemd only) after a change.
_h_rsyslog_filemode_set() (
    w=$(_h_tmpdir) || exit 1
    found=0 changed=0
    for f in $(_h_rsyslog_files); do
        for m in $(awk '$1 == "$FileCreateMode" { print $2 }' "$f"); do
            found=1
            case $m in
                *[!0-7]*) loose=1 ;;
                *) loose=$(((0$m & ~0$1) != 0)) ;;
            esac
            [ "$loose" = 1 ] || continue
            awk -v m="$m" -v want="$1" '$1 == "$FileCreateMode" && $2 == m { print "$FileCreateMode " want; next }
                { print }' "$f" >"$w/new" || { rm -rf "$w"; _h_die "cannot read $f"; }
            _h_replace "$f" "$w/new" || { rm -rf "$w"; exit 1; }
            changed=1
        done
    done
    if [ "$found" = 0 ]; then
        printf '# Set by maestro hardening.\n$FileCreateMode %s\n' "$1" >"$w/dropin"
        _h_replace "$_H_RSYSLOG_DROPIN" "$w/dropin" 0644 || { rm -rf "$w"; exit 1; }
        changed=1
    fi
    rm -rf "$w"
    if [ "$changed" = 1 ] && _h_service_active rsyslog.service; then
        systemctl restart rsyslog.service || _h_die "systemctl restart rsyslog failed"
    fi
    :
)

# ---------------------------------------------------------------------------
# what the running sshd really offers

# _h_sshd_probe_target : "ADDRESS PORT" to reach the running sshd on: its first
# ListenAddress from sshd -T (a wildcard address becomes loopback).
_h_sshd_probe_target() (
    la=$(_h_sshd_get listenaddress) || exit 1
    port=${la##*:} addr=${la%:*}
    addr=${addr#[}
    addr=${addr%]}
    case $addr in
        0.0.0.0 | '') addr=127.0.0.1 ;;
        ::) addr=::1 ;;
    esac
    case $port in
        '' | *[!0-9]*) port=$(_h_sshd_get port) ;;
    esac
    printf '%s %s\n' "$addr" "$port"
)

# _h_sshd_offer WHAT : the list the running sshd sends in its KEXINIT for WHAT ("KEX
# algorithms", "host key algorithms", "ciphers stoc", "MACs stoc"), read from an ssh
# client's debug output (the client authenticates with nothing and runs nothing).
# Exits 3 (unknown) when no ssh client is installed or sshd does not answer.
_h_sshd_offer() (
    _h_have ssh || _h_unknown "no ssh client on the node to ask the running sshd what it offers"
    t=$(_h_sshd_probe_target) || _h_unknown "sshd -T reports no listen address"
    addr=${t% *} port=${t#* }
    out=$(ssh -vv -F /dev/null -p "$port" -o BatchMode=yes -o ConnectTimeout=5 \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null \
        -o PubkeyAuthentication=no -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
        -o GSSAPIAuthentication=no -o HostbasedAuthentication=no -o IdentityFile=/dev/null \
        -l maestro-probe "$addr" true 2>&1 </dev/null | tr -d '\r')
    v=$(printf '%s\n' "$out" | awk -v what="$1" '
        /peer server KEXINIT proposal/ { peer = 1; next }
        peer && index($0, "debug2: " what ": ") == 1 { sub("^debug2: " what ": ", ""); print; exit }')
    [ -n "$v" ] || _h_unknown "the running sshd on $addr port $port did not answer (no KEXINIT)"
    printf '%s\n' "$v"
)

# _h_list_subset LIST ALLOWED : the items of comma list LIST that are not in comma list
# ALLOWED, comma separated (empty: all allowed).
_h_list_subset() (
    printf '%s\n' "$1" | tr ',' '\n' | awk -v ok="$2" '
        BEGIN { n = split(ok, a, ","); for (i = 1; i <= n; i++) allow[a[i]] = 1 }
        NF && !($0 in allow) { printf "%s%s", sep, $0; sep = "," }'
)

# _h_sshd_offer_check WHAT LABEL ALLOWED : audit: the running sshd offers only ALLOWED
# for WHAT (see _h_sshd_offer); LABEL names the setting in the message.
_h_sshd_offer_check() (
    v=$(_h_sshd_offer "$1")
    rc=$?
    [ "$rc" = 0 ] || { printf '%s\n' "$v"; exit "$rc"; }
    bad=$(_h_list_subset "$v" "$3")
    [ -z "$bad" ] && exit 0
    printf 'the running sshd offers weak or unapproved %s: %s\n' "$2" "$bad"
    exit 1
)

# _h_sshd_moduli_file : the Diffie-Hellman group file sshd reads (ModuliFile).
_h_sshd_moduli_file() (
    f=$(_h_sshd_get modulifile 2>/dev/null)
    printf '%s\n' "${f:-/etc/ssh/moduli}"
)

# _h_moduli_count FILE MIN : groups in moduli FILE of at least MIN bits ("ge") and below
# ("lt"), as "GE LT". Field 5 is the size in bits minus one.
_h_moduli_count() (
    awk -v min="$2" '$1 !~ /^#/ && NF >= 7 { if ($5 + 1 >= min) ge++; else lt++ }
        END { printf "%d %d\n", ge, lt }' "$1"
)

# _h_sshd_gex_check MIN : audit: if sshd negotiates Diffie-Hellman group exchange, every
# group it can pick from its moduli file has at least MIN bits (without a usable file it
# falls back to built-in groups down to 2048 bits).
_h_sshd_gex_check() (
    kex=$(_h_sshd_get kexalgorithms) || { _h_sshd_broken; exit 1; }
    case ",$kex," in
        *,diffie-hellman-group-exchange-*) ;;
        *) exit 0 ;;
    esac
    f=$(_h_sshd_moduli_file)
    [ -r "$f" ] || { printf 'sshd offers Diffie-Hellman group exchange but %s is missing (built-in 2048-bit fallback)\n' "$f"; exit 1; }
    c=$(_h_moduli_count "$f" "$1")
    ge=${c% *} lt=${c#* }
    if [ "$lt" -gt 0 ]; then
        printf 'sshd offers Diffie-Hellman group exchange and %s has %s group(s) below %s bits\n' "$f" "$lt" "$1"
        exit 1
    fi
    [ "$ge" -gt 0 ] || { printf 'sshd offers Diffie-Hellman group exchange but %s has no usable group (built-in fallback)\n' "$f"; exit 1; }
)

# _h_sshd_gex_fix MIN : drop the groups below MIN bits from the moduli file (comments
# kept); if none of at least MIN bits would remain, drop group exchange from
# KexAlgorithms instead. No daemon reload is needed: sshd reads the file per exchange.
_h_sshd_gex_fix() (
    _h_sshd_gex_check "$1" >/dev/null && exit 0
    f=$(_h_sshd_moduli_file)
    ge=0
    [ -r "$f" ] && { c=$(_h_moduli_count "$f" "$1"); ge=${c% *}; }
    if [ "$ge" -gt 0 ]; then
        w=$(_h_tmpdir) || exit 1
        awk -v min="$1" '$1 ~ /^#/ || NF < 7 || $5 + 1 >= min' "$f" >"$w/moduli" &&
            _h_replace "$f" "$w/moduli"
        rc=$?
        rm -rf "$w"
        exit "$rc"
    fi
    kex=$(_h_sshd_get kexalgorithms) || exit 1
    _h_sshd_set KexAlgorithms "$(printf '%s\n' "$kex" | tr ',' '\n' | grep -v '^diffie-hellman-group-exchange-' | paste -sd, -)"
)

# _h_sshd_kex_check : audit for SSH-13: the configured and the offered key exchanges
# are all approved, and group exchange cannot pick a group below 3072 bits.
_h_sshd_kex_check() {
    _h_sshd_algos KexAlgorithms "$_H_SSH_KEX_OK" &&
        _h_sshd_gex_check 3072 &&
        _h_sshd_offer_check "KEX algorithms" "key exchanges" "$_H_SSH_KEX_OK,ext-info-s,kex-strict-s-v00@openssh.com"
}

# SSH host-key algorithms: Ed25519 and RSA with SHA-2 (and their certificates).
_H_SSH_HOSTKEY_SET=ssh-ed25519-cert-v01@openssh.com,ssh-ed25519,rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-256
_H_SSH_HOSTKEY_OK=$_H_SSH_HOSTKEY_SET,sk-ssh-ed25519@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com

# _h_sshd_hostkeyalgos_check : audit: configured and offered host-key algorithms are
# all approved (no ECDSA, DSA or SHA-1 RSA signatures).
_h_sshd_hostkeyalgos_check() {
    _h_sshd_algos HostKeyAlgorithms "$_H_SSH_HOSTKEY_OK" &&
        _h_sshd_offer_check "host key algorithms" "host-key algorithms" "$_H_SSH_HOSTKEY_OK"
}

# _h_sshd_weak_hostkeys : host keys sshd loads (sshd -T hostkey) that are DSA, ECDSA or
# RSA below 3072 bits, one "FILE TYPE BITS" per line.
_h_sshd_weak_hostkeys() (
    _h_sshd_T 2>/dev/null | awk '$1 == "hostkey" { print $2 }' | while IFS= read -r k; do
        [ -r "$k" ] || continue
        l=$(ssh-keygen -l -f "$k" 2>/dev/null) || continue
        bits=${l%% *} type=${l##* }
        case $type in
            '(ED25519)') ;;
            '(RSA)') [ "$bits" -ge 3072 ] || printf '%s %s %s\n' "$k" "$type" "$bits" ;;
            *) printf '%s %s %s\n' "$k" "$type" "$bits" ;;
        esac
    done
)

# _h_sshd_hostkeys_check : audit: sshd loads no weak host key.
_h_sshd_hostkeys_check() (
    _h_sshd_T >/dev/null 2>&1 || { _h_sshd_broken; exit 1; }
    w=$(_h_sshd_weak_hostkeys)
    [ -z "$w" ] && exit 0
    printf 'sshd loads weak host key(s): %s\n' "$(printf '%s\n' "$w" | tr '\n' ';' | sed 's/;$//')"
    exit 1
)

# _h_sshd_hostkeys_fix : load only the Ed25519 host key (and RSA keys of 3072 bits or
# more are dropped too: one HostKey line). Never generates a key: a new host key changes
# the server's identity, which every client must learn first.
_h_sshd_hostkeys_fix() (
    _h_sshd_hostkeys_check >/dev/null && exit 0
    k=$(_h_sshd_T 2>/dev/null | awk '$1 == "hostkey" && $2 ~ /ed25519/ { print $2; exit }')
    [ -n "$k" ] || k=/etc/ssh/ssh_host_ed25519_key
    [ -r "$k" ] || _h_die "no Ed25519 host key ($k): generate one (ssh-keygen -t ed25519 -f $k -N '') and publish its fingerprint first"
    _h_sshd_set HostKey "$k"
)

# ---------------------------------------------------------------------------
# logging that actually happens

# _h_same_ns PID : true if PID runs in this process's mount namespace (test nodes and
# containers share a kernel; a daemon in another namespace logs somewhere else).
_h_same_ns() {
    [ "$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" = "$(readlink /proc/self/ns/mnt 2>/dev/null)" ]
}

# _h_proc_running NAME : PIDs of processes called NAME (comm) in this mount namespace.
_h_proc_running() (
    for d in /proc/[0-9]*; do
        c=""
        { IFS= read -r c <"$d/comm"; } 2>/dev/null || continue
        [ "$c" = "$1" ] || continue
        _h_same_ns "${d#/proc/}" && printf '%s\n' "${d#/proc/}"
    done
)

# _h_log_daemon : the log daemon that runs here: journald, rsyslogd or syslog-ng
# (empty if none).
_h_log_daemon() (
    for n in systemd-journal rsyslogd syslog-ng; do
        if [ -n "$(_h_proc_running "$n")" ]; then
            printf '%s\n' "$n"
            exit 0
        fi
    done
)

# _h_syslog_files : the files rsyslog writes user.notice messages to: the actions of
# selectors that match the user facility (*.*, user.*, *.notice, ... plus the usual
# catch-alls), from its configuration; /var/log/syslog and /var/log/messages as a
# fallback.
_h_syslog_files() (
    for f in $(_h_rsyslog_files); do
        awk '$1 !~ /^[#$]/ && NF >= 2 && $2 ~ /^-?\// {
                sel = $1; n = split(sel, parts, ";"); hit = 0
                for (i = 1; i <= n; i++) {
                    split(parts[i], fp, "."); fac = fp[1]; pri = fp[2]
                    if ((fac == "*" || fac ~ /(^|,)user(,|$)/) && pri != "none" && pri !~ /^(err|crit|alert|emerg|warn|warning|=)/) hit = 1
                    if (pri == "none" && (fac ~ /(^|,)user(,|$)/)) hit = 0
                }
                if (hit) { p = $2; sub(/^-/, "", p); print p }
            }' "$f"
    done
    echo /var/log/syslog
    echo /var/log/messages
)

# _h_log_probe_check : audit: a log daemon runs in this system and a message sent with
# logger(1) arrives where its configuration says (the journal, or rsyslog's files).
_h_log_probe_check() (
    d=$(_h_log_daemon)
    if [ -z "$d" ]; then
        if _h_have rsyslogd || [ -x /lib/systemd/systemd-journald ] || _h_have syslog-ng; then
            echo "no log daemon runs (journald, rsyslogd or syslog-ng): nothing records log messages"
        else
            echo "no log daemon is installed or running: nothing records log messages"
        fi
        exit 1
    fi
    _h_have logger || _h_unknown "$d runs, but logger(1) is missing: cannot send a test message"
    tag=maestro-probe
    msg="log probe $$.$(date +%s).$(od -An -N4 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')"
    logger -t "$tag" -p user.notice -- "$msg" 2>/dev/null ||
        { printf '%s runs, but logger cannot submit a message (no /dev/log?)\n' "$d"; exit 1; }
    i=0
    while [ "$i" -lt 30 ]; do
        if [ "$d" = systemd-journal ]; then
            journalctl -q --no-pager -t "$tag" -g "$msg" -n 1 2>/dev/null | grep -qF -- "$msg" && exit 0
        else
            for f in $(_h_syslog_files | awk '!seen[$0]++'); do
                [ -f "$f" ] && grep -qF -- "$msg" "$f" 2>/dev/null && exit 0
            done
        fi
        sleep 0.1 2>/dev/null || sleep 1
        i=$((i + 1))
    done
    if [ "$d" = systemd-journal ]; then
        printf 'journald runs, but a test message did not reach the journal within 3 s\n'
    else
        printf '%s runs, but a test message did not reach %s within 3 s\n' "$d" "$(_h_syslog_files | awk '!seen[$0]++' | tr '\n' ' ' | sed 's/ $//')"
    fi
    exit 1
)

# _h_log_start : start a log daemon: with systemd, enable and start journald (and rsyslog
# where installed); without an init system, start rsyslogd directly.
_h_log_start() (
    _h_log_probe_check >/dev/null && exit 0
    if _h_systemd; then
        systemctl start systemd-journald.service 2>/dev/null || :
        if _h_unit_exists rsyslog.service; then
            _h_service_enable rsyslog.service || exit 1
        fi
        exit 0
    fi
    _h_have rsyslogd || _h_die "no log daemon to start: install rsyslog (apt-get install rsyslog)"
    if [ -z "$(_h_proc_running rsyslogd)" ]; then
        rm -f /run/rsyslogd.pid
        rsyslogd -i /run/rsyslogd.pid </dev/null >/dev/null 2>&1 || _h_die "rsyslogd did not start"
    else
        # Running but not delivering: make it reopen its sockets and files.
        for p in $(_h_proc_running rsyslogd); do kill -HUP "$p" 2>/dev/null; done
    fi
    i=0
    while [ "$i" -lt 50 ] && [ ! -S /dev/log ]; do
        sleep 0.1 2>/dev/null || sleep 1
        i=$((i + 1))
    done
)

# _h_rsyslog_running_check : audit: rsyslogd runs here (and, with systemd, starts at boot).
_h_rsyslog_running_check() (
    [ -n "$(_h_proc_running rsyslogd)" ] || { echo "rsyslogd is installed but not running"; exit 1; }
    if _h_systemd && ! _h_service_enabled rsyslog.service; then
        echo "rsyslog.service is not enabled (it would not start at boot)"
        exit 1
    fi
)

# _h_logfiles_check MODE : audit: every regular file under /var/log has no permission
# bits beyond MODE (group or world write, world read), except the login records
# (wtmp, btmp, lastlog) whose modes are checked by their own tools.
_h_logfiles_find() (
    find /var/log -xdev -type f ! -name wtmp ! -name btmp ! -name lastlog ! -name 'wtmp.*' ! -name 'btmp.*' \
        -perm "/$(printf '%04o' "$((07777 & ~0$1))")" -print 2>/dev/null
)
_h_logfiles_check() (
    [ -d /var/log ] || exit 0
    l=$(_h_logfiles_find "$1")
    [ -z "$l" ] && exit 0
    printf '%s log file(s) more permissive than %s, e.g. %s\n' "$(printf '%s\n' "$l" | wc -l)" "$1" "$(printf '%s\n' "$l" | head -n 1)"
    exit 1
)
_h_logfiles_fix() (
    _h_logfiles_find "$1" | while IFS= read -r f; do
        chmod "$(printf '%04o' "$((0$(stat -c %a "$f") & 0$1))")" "$f" || exit 1
    done
)

# ---------------------------------------------------------------------------
# the umask a login session gets

# _H_SESSION_UMASK is set by the engine from the umask this very SSH session started
# with, before the script changed it.

# _h_login_umask : the umask an interactive SSH login ends up with: the session's umask
# (what sshd and its PAM stack gave this session), then the system-wide login profile
# (/etc/profile and /etc/profile.d) applied by a login shell.
_h_login_umask() (
    base=${_H_SESSION_UMASK:-}
    case $base in
        '' | *[!0-7]*) _h_unknown "the SSH session's umask was not recorded" ;;
    esac
    # shellcheck disable=SC2016  # expanded by the login shell
    v=$(umask "$base" && HOME=/nonexistent ENV= sh -l -c umask 2>/dev/null </dev/null | tail -n 1)
    case $v in
        '' | *[!0-7]*) _h_unknown "a login shell did not report its umask" ;;
    esac
    printf '%s %s\n' "$base" "$v"
)

# _h_login_umask_check WANT : audit: a login session's effective umask masks at least
# the bits of WANT (e.g. 027), and so does login.defs UMASK (new home directories and
# pam_umask use it).
_h_login_umask_check() (
    r=$(_h_login_umask)
    rc=$?
    [ "$rc" = 0 ] || { printf '%s\n' "$r"; exit "$rc"; }
    base=${r% *} v=${r#* }
    if [ "$((0$v & 0$1))" -ne "$((0$1))" ]; then
        printf 'an SSH login session gets umask %s (session %s; want %s or stricter)\n' "$v" "$base" "$1"
        exit 1
    fi
    _h_umask_check "$1"
)

_H_UMASK_PROFILE=/etc/profile.d/00-maestro-umask.sh

# _h_login_umask_set WANT : UMASK in login.defs, pam_umask in the PAM session stack
# (where PAM is used), and a login profile that tightens the umask to at least WANT.
_h_login_umask_set() (
    _h_umask_check "$1" >/dev/null || _h_login_defs_set UMASK "$1" || exit 1
    if [ -f /etc/pam.d/common-session ] && ! grep -q '^[^#]*pam_umask\.so' /etc/pam.d/common-session; then
        w=$(_h_tmpdir) || exit 1
        { cat /etc/pam.d/common-session; echo "session optional pam_umask.so"; } >"$w/cs"
        _h_replace /etc/pam.d/common-session "$w/cs" || { rm -rf "$w"; exit 1; }
        rm -rf "$w"
    fi
    w=$(_h_tmpdir) || exit 1
    {
        echo "# Set by maestro hardening: login sessions get umask $1 or stricter."
        echo "umask \"\$(printf '%04o' \"\$((0\$(umask) | 0$1))\")\""
    } >"$w/profile"
    _h_replace "$_H_UMASK_PROFILE" "$w/profile" 0644
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# ---------------------------------------------------------------------------
# more kernel parameters

# _h_sysctl_atleast KEY MIN : audit: KEY is an integer >= MIN now and at boot.
_h_sysctl_atleast() (
    cur=$(_h_sysctl_get "$1") || _h_unknown "$1 does not exist on this kernel: the setting cannot be checked"
    case $cur in '' | *[!0-9]*) printf '%s = %s (want %s or more)\n' "$1" "$cur" "$2"; exit 1 ;; esac
    [ "$cur" -ge "$2" ] || { printf '%s = %s (want %s or more)\n' "$1" "$cur" "$2"; exit 1; }
    b=$(_h_sysctl_boot "$1")
    [ -n "$b" ] || { printf '%s = %s now, but no sysctl.d file sets it (not persistent)\n' "$1" "$cur"; exit 1; }
    tab=$(printf '\t')
    bf=${b%%"$tab"*} bv=${b#*"$tab"}
    case $bv in '' | *[!0-9]*) printf '%s sets %s = %s at boot\n' "$bf" "$1" "$bv"; exit 1 ;; esac
    [ "$bv" -ge "$2" ] || { printf '%s = %s now, but %s sets %s at boot\n' "$1" "$cur" "$bf" "$bv"; exit 1; }
)

# _h_sysctl_raise KEY MIN : _h_sysctl_set KEY MIN unless _h_sysctl_atleast passes (a
# stricter value is kept, and persisted as it is).
_h_sysctl_raise() (
    _h_sysctl_atleast "$1" "$2" >/dev/null && exit 0
    cur=$(_h_sysctl_get "$1") || _h_die "sysctl $1 does not exist on this kernel"
    case $cur in '' | *[!0-9]*) cur=$2 ;; esac
    [ "$cur" -ge "$2" ] || cur=$2
    _h_sysctl_set "$1" "$cur"
)

_H_LIMITS_FILE=/etc/security/limits.d/60-maestro-hardening.conf

# _h_core_limits_check : audit: the PAM limits configuration sets a hard core size of 0
# for everyone.
_h_core_limits_check() (
    for f in /etc/security/limits.conf /etc/security/limits.d/*.conf; do
        [ -f "$f" ] || continue
        awk '$1 == "*" && $2 == "hard" && $3 == "core" && $4 == "0" { found = 1 } END { exit !found }' "$f" && exit 0
    done
    echo "no limits file sets '* hard core 0' (core dumps of any user are allowed)"
    exit 1
)

_h_core_limits_set() (
    _h_core_limits_check >/dev/null && exit 0
    w=$(_h_tmpdir) || exit 1
    printf '# Set by maestro hardening: no core dumps.\n*    hard    core    0\n' >"$w/l"
    _h_replace "$_H_LIMITS_FILE" "$w/l" 0644
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# _h_pkg_installed PKG : dpkg knows PKG as installed.
_h_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# _h_pkg_absent_check PKG... : audit: none of PKGs is installed.
_h_pkg_absent_check() (
    for p in "$@"; do
        if _h_pkg_installed "$p"; then printf '%s is installed\n' "$p"; exit 1; fi
    done
)

# _h_pkg_remove PKG... : purge those that are installed.
_h_pkg_remove() (
    for p in "$@"; do
        _h_pkg_installed "$p" || continue
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$p" </dev/null >/dev/null || _h_die "apt-get purge $p failed"
    done
)

# ---------------------------------------------------------------------------
# file system scans (bounded: a scan that does not finish is unknown, not compliant)

_H_SCAN_SECONDS=60

# _h_local_roots : mount points of the local file systems to scan (no proc, sys, dev,
# tmpfs or network file systems), one per line.
_h_local_roots() (
    awk '$3 !~ /^(proc|sysfs|devtmpfs|devpts|tmpfs|cgroup2?|securityfs|debugfs|tracefs|pstore|bpf|mqueue|hugetlbfs|configfs|fusectl|binfmt_misc|autofs|nfs4?|cifs|smb3|fuse\..*|squashfs|overlay|ramfs|efivarfs|nsfs|rpc_pipefs)$/ { print $2 }' /proc/mounts
    # overlay roots (containers, the test fleet) are the node's own files
    awk '$3 == "overlay" { print $2 }' /proc/mounts
)

# _h_scan_all : one pass over the local file systems (find -xdev from each root) that
# lists every path a scan rule looks for, as "KIND PATH" lines: ww (world-writable file
# or non-sticky world-writable directory), unowned, suid. Cached for the rest of this
# run (rules share the engine's $_m_tmp), so three rules cost one walk. Exits 3 when a
# root could not be walked within _H_SCAN_SECONDS.
_h_scan_all() (
    c=${_m_tmp:-}/h-scan
    if [ -n "${_m_tmp:-}" ] && [ -f "$c" ]; then
        cat "$c"
        exit "$(cat "$c.rc")"
    fi
    w=$(_h_tmpdir) || exit 1
    _h_local_roots | awk '!seen[$0]++' >"$w/roots"
    : >"$w/out"
    rc=0
    while IFS= read -r r; do
        timeout "$_H_SCAN_SECONDS" find "$r" -xdev             \( \( -type f -perm -0002 -printf 'ww %p\n' \) , \( -type d -perm -0002 ! -perm -1000 -printf 'ww %p\n' \) , \
            \( \( -nouser -o -nogroup \) -printf 'unowned %p\n' \) , \
            \( -type f \( -perm -4000 -o -perm -2000 \) -printf 'suid %p\n' \) \) 2>/dev/null >>"$w/out"
        [ "$?" = 124 ] && rc=3
    done <"$w/roots"
    awk '!seen[$0]++' "$w/out" >"$w/all"
    if [ -n "${_m_tmp:-}" ]; then
        cp "$w/all" "$c" && echo "$rc" >"$c.rc"
    fi
    cat "$w/all"
    rm -rf "$w"
    exit "$rc"
)

# _h_scan KIND : the paths of one kind from _h_scan_all (at most 1000); exit 3 when the
# scan did not finish.
_h_scan() (
    l=$(_h_scan_all)
    rc=$?
    printf '%s\n' "$l" | awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print }' | head -n 1000
    exit "$rc"
)

# _h_scan_report WHAT KIND : audit over _h_scan: compliant when nothing of KIND is found.
_h_scan_report() (
    l=$(_h_scan "$2")
    rc=$?
    [ "$rc" = 3 ] && _h_unknown "the scan for $1 did not finish within $_H_SCAN_SECONDS s"
    [ -z "$l" ] && exit 0
    printf '%s %s, e.g. %s\n' "$(printf '%s\n' "$l" | wc -l)" "$1" "$(printf '%s\n' "$l" | head -n 3 | tr '\n' ' ')"
    exit 1
)

# Where SUID/SGID programs may be (Debian's own setuid programs).
_H_SUID_ALLOW="/usr/bin/chage /usr/bin/chfn /usr/bin/chsh /usr/bin/crontab /usr/bin/expiry /usr/bin/gpasswd /usr/bin/mount /usr/bin/newgrp /usr/bin/passwd /usr/bin/su /usr/bin/sudo /usr/bin/umount /usr/bin/ssh-agent /usr/bin/wall /usr/bin/write.ul /usr/bin/dotlockfile /usr/bin/fusermount /usr/bin/fusermount3 /usr/bin/at /usr/bin/bsd-write /usr/bin/pkexec /usr/sbin/unix_chkpwd /usr/sbin/pam_extrausers_chkpwd /usr/lib/openssh/ssh-keysign /usr/lib/dbus-1.0/dbus-daemon-launch-helper /usr/lib/polkit-1/polkit-agent-helper-1 /usr/sbin/postdrop /usr/sbin/postqueue /usr/lib/x86_64-linux-gnu/utempter/utempter /usr/bin/ntfs-3g"

# _h_suid_check : audit: every SUID/SGID file is on the allowlist.
_h_suid_check() (
    l=$(_h_scan suid)
    [ "$?" = 3 ] && _h_unknown "the SUID/SGID scan did not finish within $_H_SCAN_SECONDS s"
    extra=""
    for f in $l; do
        r=$(readlink -f "$f")
        case " $_H_SUID_ALLOW " in
            *" $f "* | *" $r "*) ;;
            *) extra="$extra $f" ;;
        esac
    done
    [ -z "$extra" ] && exit 0
    printf 'SUID/SGID files not on the allowlist:%s\n' "$extra"
    exit 1
)

# _h_manual MSG : a remediation that needs a human decision.
_h_manual() {
    _h_die "manual action needed: $*"
}

# _h_home_dirs : "USER HOME" of each interactive account (a login shell, UID >= UID_MIN
# or root).
_h_home_dirs() (
    min=$(_h_login_defs_get UID_MIN)
    min=${min:-1000}
    awk -F: -v min="$min" '($3 >= min || $3 == 0) && $3 != 65534 && $7 !~ /(nologin|false|sync|shutdown|halt)$/ { print $1, $6 }' /etc/passwd
)

# _h_home_check : audit: every interactive user's home exists, is owned by them and has
# no group-write or world permissions (0750 or stricter).
_h_home_check() (
    bad=""
    for l in $(_h_home_dirs | tr ' ' ':'); do
        u=${l%%:*} h=${l#*:}
        [ -d "$h" ] || { bad="$bad $u:$h(missing)"; continue; }
        m=$(_h_perm_check "$h" 750 "$u" "$(id -gn "$u" 2>/dev/null || echo "$u"),root,$u") || bad="$bad $m;"
    done
    [ -z "$bad" ] && exit 0
    printf 'home directories:%s\n' "$bad"
    exit 1
)

_h_home_fix() (
    for l in $(_h_home_dirs | tr ' ' ':'); do
        u=${l%%:*} h=${l#*:}
        [ -d "$h" ] || continue
        st=$(stat -c %U "$h")
        [ "$st" = "$u" ] || chown "$u" "$h" || exit 1
        chmod g-w,o-rwx "$h" || exit 1
    done
)

# _h_dotfiles_check : audit: no interactive user's dot file is group- or world-writable,
# and there are no .rhosts, .shosts or .netrc files.
_h_dotfiles_find() (
    _h_home_dirs | while read -r u h; do
        [ -d "$h" ] || continue
        find "$h" -maxdepth 1 -name '.*' \( -type f -perm /022 -o -name .rhosts -o -name .shosts -o -name .netrc \) -print 2>/dev/null
    done
)
_h_dotfiles_check() (
    l=$(_h_dotfiles_find)
    [ -z "$l" ] && exit 0
    printf 'unsafe dot files: %s\n' "$(printf '%s\n' "$l" | head -n 5 | tr '\n' ' ')"
    exit 1
)
_h_dotfiles_fix() (
    _h_dotfiles_find | while IFS= read -r f; do
        case ${f##*/} in
            .rhosts | .shosts | .netrc) _h_manual "$f exists: remove it once its owner agrees" ;;
            *) chmod go-w "$f" || exit 1 ;;
        esac
    done
)

# _h_allow_only_check DENY ALLOW : audit: ALLOW exists (0640 root:root or stricter) and
# DENY does not, so only listed users may use the tool (cron, at).
_h_allow_only_check() (
    [ -e "$2" ] || { printf '%s does not exist (everyone not in %s may use it)\n' "$2" "$1"; exit 1; }
    _h_perm_check "$2" 640 root root,crontab,daemon || exit 1
    [ ! -e "$1" ] || { printf '%s exists (use %s only)\n' "$1" "$2"; exit 1; }
)

_h_allow_only_set() (
    if [ ! -e "$2" ]; then
        w=$(_h_tmpdir) || exit 1
        echo root >"$w/allow"
        _h_replace "$2" "$w/allow" 0640 || { rm -rf "$w"; exit 1; }
        rm -rf "$w"
    fi
    _h_perm_set "$2" 640 root root || exit 1
    rm -f -- "$1"
)

# ---------------------------------------------------------------------------
# accounts

# _h_passwd_dupes : duplicate UIDs, GIDs, user and group names, one "what value" per line.
_h_passwd_dupes() (
    cut -d: -f3 /etc/passwd | sort | uniq -d | sed 's/^/UID /'
    cut -d: -f3 /etc/group | sort | uniq -d | sed 's/^/GID /'
    cut -d: -f1 /etc/passwd | sort | uniq -d | sed 's/^/user /'
    cut -d: -f1 /etc/group | sort | uniq -d | sed 's/^/group /'
)

_h_passwd_dupes_check() (
    d=$(_h_passwd_dupes)
    [ -z "$d" ] && exit 0
    printf 'duplicates: %s\n' "$(printf '%s\n' "$d" | tr '\n' ',' | sed 's/,$//')"
    exit 1
)

# _h_groups_exist_check : audit: every account's primary GID is a group.
_h_groups_exist_check() (
    m=$(awk -F: 'NR == FNR { g[$3] = 1; next } !($4 in g) { printf "%s(%s) ", $1, $4 }' /etc/group /etc/passwd)
    [ -z "$m" ] && exit 0
    printf 'accounts whose primary group does not exist: %s\n' "$m"
    exit 1
)

# _h_shadowed_check : audit: every account's password is in /etc/shadow ("x" in passwd).
_h_shadowed_check() (
    m=$(awk -F: '$2 != "x" { printf "%s ", $1 }' /etc/passwd)
    [ -z "$m" ] && exit 0
    printf 'accounts with a password in /etc/passwd: %s\n' "$m"
    exit 1
)

# _h_shadow_group_check : audit: the shadow group has no members.
_h_shadow_group_check() (
    gid=$(awk -F: '$1 == "shadow" { print $3 }' /etc/group)
    [ -n "$gid" ] || exit 0
    m=$(awk -F: '$1 == "shadow" { print $4 }' /etc/group)
    p=$(awk -F: -v g="$gid" '$4 == g { printf "%s ", $1 }' /etc/passwd)
    [ -z "$m$p" ] && exit 0
    printf 'the shadow group has members: %s %s\n' "$m" "$p"
    exit 1
)

# _h_gid0_check : audit: root's primary group is GID 0 and only group root has GID 0.
_h_gid0_check() (
    g=$(awk -F: '$1 == "root" { print $4 }' /etc/passwd)
    [ "$g" = 0 ] || { printf "root's primary GID is %s (want 0)\n" "$g"; exit 1; }
    o=$(awk -F: '$3 == 0 && $1 != "root" { printf "%s ", $1 }' /etc/group)
    [ -z "$o" ] || { printf 'groups besides root with GID 0: %s\n' "$o"; exit 1; }
)

# _h_system_shells : system accounts (UID below UID_MIN, not root/sync/shutdown/halt)
# whose shell is a real login shell.
_h_system_shells() (
    min=$(_h_login_defs_get UID_MIN)
    awk -F: -v min="${min:-1000}" '$3 < min && $1 !~ /^(root|sync|shutdown|halt)$/ && $7 !~ /(nologin|false)$/ { print $1 }' /etc/passwd
)

_h_system_shells_check() (
    u=$(_h_system_shells)
    [ -z "$u" ] && exit 0
    printf 'system accounts with a login shell: %s\n' "$(printf '%s\n' "$u" | tr '\n' ' ')"
    exit 1
)

_h_system_shells_fix() (
    nl=/usr/sbin/nologin
    [ -x "$nl" ] || nl=/sbin/nologin
    for u in $(_h_system_shells); do
        usermod -s "$nl" "$u" || _h_die "usermod -s $nl $u failed"
    done
)

# _h_nologin_shells_check : audit: no nologin program is listed as a valid shell.
_h_nologin_shells_check() (
    [ -f /etc/shells ] || exit 0
    grep -q '/nologin$' /etc/shells || exit 0
    echo "/etc/shells lists nologin as a valid login shell"
    exit 1
)

_h_nologin_shells_fix() (
    w=$(_h_tmpdir) || exit 1
    grep -v '/nologin$' /etc/shells >"$w/s"
    _h_replace /etc/shells "$w/s"
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# _h_root_path_check : audit: root's login PATH has no empty or relative entries and no
# directory that root does not own or others can write.
_h_root_path_check() (
    p=$(HOME=/root sh -l -c 'printf "%s" "$PATH"' 2>/dev/null </dev/null)
    [ -n "$p" ] || _h_unknown "a root login shell reported no PATH"
    case ":$p:" in
        *::*) echo "root's PATH has an empty entry"; exit 1 ;;
    esac
    printf '%s\n' "$p" | tr ':' '\n' | while IFS= read -r d; do
        case $d in /*) ;; *) printf "root's PATH has a relative entry: %s\n" "$d"; exit 1 ;; esac
        [ -d "$d" ] || continue
        m=$(_h_perm_check "$d" 755 root root,staff,0,50) || { printf "root's PATH: %s\n" "$m"; exit 1; }
    done
)

# _h_pam_has FILE MODULE : FILE has an active line using MODULE.
_h_pam_has() {
    [ -f "$1" ] && grep -Eq "^[[:space:]]*[^#].*[[:space:]]$2([[:space:]]|$)" "$1"
}

_h_pam_module_check() (
    _h_pam_has "/etc/pam.d/$1" "$2" && exit 0
    printf '%s is not used in /etc/pam.d/%s\n' "$2" "$1"
    exit 1
)

# _h_pam_unix_hash_check : audit: pam_unix hashes new passwords with yescrypt or SHA-512.
_h_pam_unix_hash_check() (
    l=$(grep -E '^[[:space:]]*password[[:space:]].*pam_unix\.so' /etc/pam.d/common-password 2>/dev/null)
    [ -n "$l" ] || { echo "pam_unix is not in the password stack"; exit 1; }
    case $l in *yescrypt* | *sha512*) exit 0 ;; esac
    printf 'pam_unix does not hash with yescrypt or sha512: %s\n' "$l"
    exit 1
)

# _h_pwquality_get KEY : the value of KEY in pwquality.conf and its drop-ins.
_h_pwquality_get() (
    cat /etc/security/pwquality.conf /etc/security/pwquality.conf.d/*.conf 2>/dev/null |
        awk -F= -v k="$1" '{ x = $1; gsub(/[ \t]/, "", x) } x == k { v = $2; gsub(/[ \t]/, "", v) } END { print v }'
)

_h_pwquality_min_check() (
    v=$(_h_pwquality_get "$1")
    case $v in '' | *[!0-9]*) printf 'pwquality %s is not set (want %s or more)\n' "$1" "$2"; exit 1 ;; esac
    [ "$v" -ge "$2" ] || { printf 'pwquality %s = %s (want %s or more)\n' "$1" "$v" "$2"; exit 1; }
)

_h_pwquality_set() (
    f=/etc/security/pwquality.conf.d/60-maestro-hardening.conf
    w=$(_h_tmpdir) || exit 1
    if [ -f "$f" ]; then
        _h_conf_edit "$f" "$1" "$1 = $2" plain >"$w/n"
    else
        printf '# Set by maestro hardening.\n%s = %s\n' "$1" "$2" >"$w/n"
    fi
    _h_replace "$f" "$w/n" 0644
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# _h_login_defs_in KEY VALUE... : audit: login.defs KEY is one of VALUEs.
_h_login_defs_in() (
    k=$1
    shift
    v=$(_h_login_defs_get "$k")
    for want in "$@"; do [ "$v" = "$want" ] && exit 0; done
    printf '%s is "%s" in %s (want %s)\n' "$k" "$v" "$_H_LOGIN_DEFS" "$*"
    exit 1
)

# _h_inactive_check MAX : audit: new accounts lock after at most MAX days of an expired
# password (useradd's INACTIVE default).
_h_inactive_check() (
    v=$(useradd -D 2>/dev/null | awk -F= '$1 == "INACTIVE" { print $2 }')
    case $v in '' | -* | *[!0-9]*) printf 'useradd INACTIVE is %s (want 0..%s)\n' "${v:-unset}" "$1"; exit 1 ;; esac
    [ "$v" -le "$1" ] || { printf 'useradd INACTIVE is %s (want 0..%s)\n' "$v" "$1"; exit 1; }
)

# _h_login_var_check VAR MAX : audit: a login shell has VAR set to 1..MAX and read-only.
_h_tmout_check() (
    r=$(HOME=/nonexistent sh -l -c 'printf "%s " "${TMOUT:-}"; (TMOUT=1) 2>/dev/null && echo writable || echo readonly' 2>/dev/null </dev/null)
    v=${r% *} ro=${r#* }
    case $v in '' | *[!0-9]*) printf 'login shells have no TMOUT (want 1..%s, read-only)\n' "$1"; exit 1 ;; esac
    { [ "$v" -ge 1 ] && [ "$v" -le "$1" ]; } || { printf 'login shells have TMOUT=%s (want 1..%s)\n' "$v" "$1"; exit 1; }
    [ "$ro" = readonly ] || { echo "login shells can unset TMOUT (it is not read-only)"; exit 1; }
)

_h_tmout_set() (
    w=$(_h_tmpdir) || exit 1
    printf '# Set by maestro hardening: idle shells end after %s s.\nTMOUT=%s\nreadonly TMOUT\nexport TMOUT\n' "$1" "$1" >"$w/t"
    _h_replace /etc/profile.d/00-maestro-tmout.sh "$w/t" 0644
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# _h_issue_check FILE : audit: FILE exists, is not empty and does not reveal the OS.
_h_issue_check() (
    [ -s "$1" ] || { printf '%s is missing or empty (no warning banner)\n' "$1"; exit 1; }
    if _h_banner_leaks "$1"; then printf '%s reveals the operating system\n' "$1"; exit 1; fi
)

_h_issue_set() (
    _h_issue_check "$1" >/dev/null && exit 0
    w=$(_h_tmpdir) || exit 1
    printf '%s\n' \
        "Authorized access only. This system is monitored; activity may be logged and" \
        "reported. Disconnect now if you are not an authorized user." >"$w/banner"
    _h_replace "$1" "$w/banner" 0644
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# _h_motd_check : audit: /etc/motd, where present, does not reveal the OS.
_h_motd_check() (
    [ -s /etc/motd ] || exit 0
    if _h_banner_leaks /etc/motd; then echo "/etc/motd reveals the operating system"; exit 1; fi
)

# ---------------------------------------------------------------------------
# scheduled jobs that really run

# _h_scheduled_check TIMER CRONFILE : audit: a scheduler that runs here will run the job:
# the systemd TIMER is enabled and active, or (without systemd) CRONFILE exists and a
# cron daemon runs in this system.
_h_scheduled_check() (
    if _h_systemd; then
        _h_service_active "$1" || { printf '%s is not active\n' "$1"; exit 1; }
        exit 0
    fi
    [ -f "$2" ] || { printf '%s does not exist and there is no systemd timer\n' "$2"; exit 1; }
    [ -n "$(_h_proc_running cron)$(_h_proc_running crond)" ] ||
        { printf '%s exists, but no cron daemon runs to run it\n' "$2"; exit 1; }
)

# _h_scheduled_set TIMER : enable and start TIMER (systemd), or start cron.
_h_scheduled_set() (
    if _h_systemd; then
        _h_service_enable "$1"
        exit
    fi
    [ -n "$(_h_proc_running cron)$(_h_proc_running crond)" ] && exit 0
    _h_have cron || _h_die "no scheduler to run it: install cron (apt-get install cron)"
    cron </dev/null >/dev/null 2>&1 || _h_die "cron did not start"
)

# ---------------------------------------------------------------------------
# journald and rsyslog settings

# _h_journald_get KEY : the effective value of KEY in journald's configuration.
_h_journald_get() (
    {
        [ -f /etc/systemd/journald.conf ] && echo /etc/systemd/journald.conf
        _h_confd_list .conf /etc/systemd/journald.conf.d /run/systemd/journald.conf.d /usr/lib/systemd/journald.conf.d
    } | while IFS= read -r f; do
        awk -F= -v k="$1" '{ x = $1; gsub(/^[ \t]+|[ \t]+$/, "", x) } x == k { v = $2; gsub(/^[ \t]+|[ \t]+$/, "", v); print v }' "$f"
    done | tail -n 1
)

_h_journald_key_check() (
    v=$(_h_journald_get "$1")
    [ "${v:-$3}" = "$2" ] && exit 0
    printf 'journald %s=%s (want %s)\n' "$1" "${v:-$3 (default)}" "$2"
    exit 1
)

_h_journald_key_set() (
    _h_journald_key_check "$1" "$2" "$3" >/dev/null && exit 0
    f=/etc/systemd/journald.conf.d/61-maestro-$(_h_lower "$1").conf
    w=$(_h_tmpdir) || exit 1
    printf '# Set by maestro hardening.\n[Journal]\n%s=%s\n' "$1" "$2" >"$w/d"
    _h_replace "$f" "$w/d" 0644 || { rm -rf "$w"; exit 1; }
    rm -rf "$w"
    if _h_systemd; then systemctl restart systemd-journald.service || _h_die "journald restart failed"; fi
)

# _h_rsyslog_remote_input : rsyslog configuration lines that load a network input.
_h_rsyslog_remote_input() (
    for f in $(_h_rsyslog_files); do
        grep -HnE '^[[:space:]]*(module\(load="?im(tcp|udp|relp)|\$ModLoad[[:space:]]+im(tcp|udp|relp)|input\(type="?im(tcp|udp|relp)|\$(InputTCPServerRun|UDPServerRun))' "$f"
    done
)

_h_rsyslog_remote_check() (
    l=$(_h_rsyslog_remote_input)
    [ -z "$l" ] && exit 0
    printf 'rsyslog accepts logs from the network: %s\n' "$(printf '%s\n' "$l" | head -n 1)"
    exit 1
)

_h_rsyslog_remote_fix() (
    _h_rsyslog_remote_input | cut -d: -f1 | sort -u | while IFS= read -r f; do
        w=$(_h_tmpdir) || exit 1
        awk -v tag="$_H_TAG" '/^[[:space:]]*(module\(load="?im(tcp|udp|relp)|\$ModLoad[[:space:]]+im(tcp|udp|relp)|input\(type="?im(tcp|udp|relp)|\$(InputTCPServerRun|UDPServerRun))/ { print "# " tag ": " $0; next } { print }' "$f" >"$w/n"
        _h_replace "$f" "$w/n" || exit 1
        rm -rf "$w"
    done
    for p in $(_h_proc_running rsyslogd); do kill -HUP "$p" 2>/dev/null; done
    :
)

# _h_logrotate_check : audit: logrotate is installed, configured and scheduled.
_h_logrotate_check() (
    _h_have logrotate || { echo "logrotate is not installed"; exit 1; }
    [ -f /etc/logrotate.conf ] || { echo "/etc/logrotate.conf does not exist"; exit 1; }
    _h_scheduled_check logrotate.timer /etc/cron.daily/logrotate
)

# ---------------------------------------------------------------------------
# auditd

_H_AUDIT_RULES=/etc/audit/rules.d/50-maestro-hardening.rules
_H_AUDITD_CONF=/etc/audit/auditd.conf

# _h_auditd_pid : the PID the kernel sends audit records to, if that auditd runs here.
_h_auditd_pid() (
    _h_have auditctl || exit 1
    pid=$(auditctl -s 2>/dev/null | awk '$1 == "pid" { print $2 }')
    case $pid in '' | 0 | *[!0-9]*) exit 1 ;; esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = auditd ] && _h_same_ns "$pid" || exit 1
    printf '%s\n' "$pid"
)

# _h_auditd_running_check : audit: auditd receives the kernel's audit records here,
# auditing is enabled, and (systemd) the unit is enabled.
_h_auditd_running_check() (
    _h_have auditctl || { echo "auditd is not installed"; exit 1; }
    s=$(auditctl -s 2>&1) || _h_unknown "the kernel's audit status cannot be read: $(printf '%s\n' "$s" | head -n 1)"
    _h_auditd_pid >/dev/null || { echo "auditd is not running (the kernel has no audit daemon here)"; exit 1; }
    e=$(printf '%s\n' "$s" | awk '$1 == "enabled" { print $2 }')
    [ "$e" = 1 ] || [ "$e" = 2 ] || { printf 'kernel auditing is disabled (enabled %s)\n' "$e"; exit 1; }
    if _h_systemd && ! _h_service_enabled auditd.service; then echo "auditd.service is not enabled"; exit 1; fi
)

_h_auditd_start() (
    _h_have auditd || _h_die "auditd is not installed: apt-get install auditd"
    if _h_systemd; then
        _h_service_enable auditd.service || exit 1
    elif ! _h_auditd_pid >/dev/null; then
        auditd </dev/null >/dev/null 2>&1 || _h_die "auditd did not start"
        i=0
        while [ "$i" -lt 50 ] && ! _h_auditd_pid >/dev/null; do
            sleep 0.1 2>/dev/null || sleep 1
            i=$((i + 1))
        done
    fi
    auditctl -e 1 >/dev/null || _h_die "cannot enable kernel auditing"
)

# _h_cmdline_check ARG : audit: the running kernel was booted with ARG (e.g. audit=1) or
# ARG=VALUE of at least the given number (audit_backlog_limit=8192).
_h_cmdline_check() (
    k=${1%%=*} want=${1#*=}
    v=$(tr ' ' '\n' </proc/cmdline | awk -F= -v k="$k" '$1 == k { print $2 }' | tail -n 1)
    case $want in
        *[!0-9]*) [ "$v" = "$want" ] && exit 0 ;;
        *) case $v in '' | *[!0-9]*) ;; *) [ "$v" -ge "$want" ] && exit 0 ;; esac ;;
    esac
    printf 'the kernel was booted without %s (%s=%s)\n' "$1" "$k" "${v:-unset}"
    exit 1
)

# _h_cmdline_set ARG : add ARG to GRUB_CMDLINE_LINUX and regenerate the GRUB
# configuration. It takes effect at the next boot: the audit keeps failing until then.
_h_cmdline_set() (
    f=/etc/default/grub
    [ -f "$f" ] || _h_die "no $f: add $1 to the kernel command line of this system's boot loader"
    k=${1%%=*}
    grep -q "^GRUB_CMDLINE_LINUX=.*$k=" "$f" && grep -q "^GRUB_CMDLINE_LINUX=.*$1" "$f" || {
        w=$(_h_tmpdir) || exit 1
        awk -v a="$1" -v k="$k" '/^GRUB_CMDLINE_LINUX=/ { gsub(k "=[^ \"]*", ""); sub(/"$/, " " a "\""); sub(/=" /, "=\"") } { print }' "$f" >"$w/g"
        _h_replace "$f" "$w/g" || { rm -rf "$w"; exit 1; }
        rm -rf "$w"
        _h_have update-grub && { update-grub >/dev/null 2>&1 || _h_die "update-grub failed"; }
    }
    _h_die "$1 is in the boot configuration and takes effect at the next boot"
)

# _h_auditd_conf_get KEY : the value of KEY in auditd.conf (lower case).
_h_auditd_conf_get() (
    [ -f "$_H_AUDITD_CONF" ] || exit 0
    awk -F= -v k="$1" '{ x = $1; gsub(/[ \t]/, "", x) } x == k { v = $2; gsub(/^[ \t]+|[ \t]+$/, "", v) } END { print tolower(v) }' "$_H_AUDITD_CONF"
)

# _h_auditd_conf_in KEY VALUE... : audit: auditd.conf KEY is one of VALUEs.
_h_auditd_conf_in() (
    k=$1
    shift
    [ -f "$_H_AUDITD_CONF" ] || { echo "$_H_AUDITD_CONF does not exist (auditd is not installed)"; exit 1; }
    v=$(_h_auditd_conf_get "$k")
    for want in "$@"; do [ "$v" = "$want" ] && exit 0; done
    printf 'auditd %s = %s (want %s)\n' "$k" "${v:-unset}" "$(printf '%s\n' "$*" | sed 's/ / or /g')"
    exit 1
)

# _h_auditd_conf_set KEY VALUE : one "KEY = VALUE" line in auditd.conf; a running
# auditd re-reads it (SIGHUP).
_h_auditd_conf_set() (
    [ -f "$_H_AUDITD_CONF" ] || _h_die "$_H_AUDITD_CONF does not exist: install auditd"
    w=$(_h_tmpdir) || exit 1
    awk -v k="$1" -v line="$1 = $2" '{ x = $1; sub(/=.*/, "", x); gsub(/[ \t]/, "", x) }
        x == k { if (!done) print line; done = 1; next } { print } END { if (!done) print line }' "$_H_AUDITD_CONF" >"$w/c"
    _h_replace "$_H_AUDITD_CONF" "$w/c" || { rm -rf "$w"; exit 1; }
    rm -rf "$w"
    p=$(_h_auditd_pid) && kill -HUP "$p"
    :
)

# _h_audit_rules_text : the audit rules maestro installs, one CIS item per key (the key
# names the item). Privileged programs: every SUID/SGID file on the root file system.
_h_audit_rules_text() (
    c=${_m_tmp:-}/h-audit-rules
    if [ -n "${_m_tmp:-}" ] && [ -s "$c" ]; then
        cat "$c"
        exit 0
    fi
    w=$(_h_tmpdir) || exit 1
    _h_audit_rules_generate >"$w/r" || { rm -rf "$w"; exit 1; }
    [ -n "${_m_tmp:-}" ] && cp "$w/r" "$c"
    cat "$w/r"
    rm -rf "$w"
)

# _h_audit_rules_generate : the rules text itself (see _h_audit_rules_text).
_h_audit_rules_generate() (
    cat <<'RULES'
## Written by maestro hardening. Keys name the CIS Debian 12 items.
-w /etc/sudoers -p wa -k cis-6.2.3.1
-w /etc/sudoers.d -p wa -k cis-6.2.3.1
-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k cis-6.2.3.2
-a always,exit -F arch=b32 -C euid!=uid -F auid!=unset -S execve -k cis-6.2.3.2
-w /var/log/sudo.log -p wa -k cis-6.2.3.3
-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k cis-6.2.3.4
-a always,exit -F arch=b32 -S adjtimex,settimeofday,clock_settime -k cis-6.2.3.4
-w /etc/localtime -p wa -k cis-6.2.3.4
-a always,exit -F arch=b64 -S sethostname,setdomainname -k cis-6.2.3.5
-a always,exit -F arch=b32 -S sethostname,setdomainname -k cis-6.2.3.5
-w /etc/issue -p wa -k cis-6.2.3.5
-w /etc/issue.net -p wa -k cis-6.2.3.5
-w /etc/hosts -p wa -k cis-6.2.3.5
-w /etc/hostname -p wa -k cis-6.2.3.5
-w /etc/network -p wa -k cis-6.2.3.5
-a always,exit -F arch=b64 -S creat,open,openat,truncate,ftruncate -F exit=-EACCES -F auid>=1000 -F auid!=unset -k cis-6.2.3.7
-a always,exit -F arch=b64 -S creat,open,openat,truncate,ftruncate -F exit=-EPERM -F auid>=1000 -F auid!=unset -k cis-6.2.3.7
-w /etc/group -p wa -k cis-6.2.3.8
-w /etc/passwd -p wa -k cis-6.2.3.8
-w /etc/gshadow -p wa -k cis-6.2.3.8
-w /etc/shadow -p wa -k cis-6.2.3.8
-w /etc/security/opasswd -p wa -k cis-6.2.3.8
-w /etc/nsswitch.conf -p wa -k cis-6.2.3.8
-w /etc/pam.conf -p wa -k cis-6.2.3.8
-w /etc/pam.d -p wa -k cis-6.2.3.8
-a always,exit -F arch=b64 -S chmod,fchmod,fchmodat,chown,fchown,lchown,fchownat,setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr -F auid>=1000 -F auid!=unset -k cis-6.2.3.9
-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k cis-6.2.3.10
-w /var/run/utmp -p wa -k cis-6.2.3.11
-w /var/log/wtmp -p wa -k cis-6.2.3.11
-w /var/log/btmp -p wa -k cis-6.2.3.11
-w /var/log/lastlog -p wa -k cis-6.2.3.12
-w /var/run/faillock -p wa -k cis-6.2.3.12
-a always,exit -F arch=b64 -S unlink,unlinkat,rename,renameat -F auid>=1000 -F auid!=unset -k cis-6.2.3.13
-w /etc/apparmor -p wa -k cis-6.2.3.14
-w /etc/apparmor.d -p wa -k cis-6.2.3.14
-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -k cis-6.2.3.19
RULES
    for p in /usr/bin/chcon:6.2.3.15 /usr/bin/setfacl:6.2.3.16 /usr/bin/chacl:6.2.3.17 /usr/sbin/usermod:6.2.3.18 /usr/bin/kmod:6.2.3.19; do
        [ -e "${p%:*}" ] && printf -- '-a always,exit -F path=%s -F perm=x -F auid>=1000 -F auid!=unset -k cis-%s\n' "${p%:*}" "${p#*:}"
    done
    find /usr/bin /usr/sbin /usr/lib -xdev -type f \( -perm -4000 -o -perm -2000 \) 2>/dev/null | sort | while IFS= read -r f; do
        printf -- '-a always,exit -F path=%s -F perm=x -F auid>=1000 -F auid!=unset -k cis-6.2.3.6\n' "$f"
    done
)

# _h_audit_key_check ITEM : audit: the kernel has audit rules loaded for CIS item ITEM
# (key cis-ITEM) - what auditctl -l reports, not what a file says; as many as the
# rules maestro writes for it.
_h_audit_key_check() (
    _h_have auditctl || { echo "auditd is not installed"; exit 1; }
    loaded=$(auditctl -l 2>&1) || _h_unknown "the kernel's audit rules cannot be read: $(printf '%s\n' "$loaded" | head -n 1)"
    want=$(_h_audit_rules_text | grep -c -- "-k cis-$1\$")
    have=$(printf '%s\n' "$loaded" | grep -cE -- "(-k |key=)cis-$(printf '%s' "$1" | sed 's/\./[.]/g')\$")
    [ "$have" -ge "$want" ] && [ "$want" -gt 0 ] && exit 0
    printf 'the kernel has %s of %s audit rules for CIS %s loaded\n' "$have" "$want" "$1"
    exit 1
)

# _h_audit_rules_install : write the rules file and load every rules file into the
# kernel (augenrules). Never makes the configuration immutable (-e 2): on a shared kernel
# (containers, the test fleet) that could only be undone by a reboot.
_h_audit_rules_install() (
    _h_have augenrules || _h_die "auditd is not installed: apt-get install auditd"
    w=$(_h_tmpdir) || exit 1
    _h_audit_rules_text >"$w/r"
    _h_replace "$_H_AUDIT_RULES" "$w/r" 0640 || { rm -rf "$w"; exit 1; }
    rm -rf "$w"
    out=$(augenrules --load 2>&1) || _h_die "augenrules --load failed: $(printf '%s\n' "$out" | tail -n 1)"
)

# _h_audit_rules_sync_check : audit: the rules loaded in the kernel are the ones the
# rules files would load (augenrules --check compares the files; auditctl -l the kernel).
_h_audit_rules_sync_check() (
    _h_have augenrules || { echo "auditd is not installed"; exit 1; }
    out=$(augenrules --check 2>&1)
    case $out in *"No change"*) ;; *) printf 'the rules files changed since they were merged: %s\n' "$(printf '%s\n' "$out" | head -n 1)"; exit 1 ;; esac
    [ -f /etc/audit/audit.rules ] || { echo "/etc/audit/audit.rules does not exist"; exit 1; }
    want=$(grep -cE '^-[aw] ' /etc/audit/audit.rules)
    have=$(auditctl -l 2>/dev/null | grep -cE '^-[aw] ')
    [ "$have" -ge "$want" ] && exit 0
    printf 'the kernel has %s audit rules loaded, the rules files %s\n' "$have" "$want"
    exit 1
)

# _h_auditd_logfiles : auditd's log directory and files.
_h_auditd_logdir() (
    f=$(_h_auditd_conf_get log_file)
    f=${f:-/var/log/audit/audit.log}
    dirname -- "$f"
)

# ---------------------------------------------------------------------------
# AIDE

_H_AIDE_CONF=/etc/aide/aide.conf
_H_AIDE_DB=/var/lib/aide/aide.db
_H_AIDE_INIT_PID=/run/maestro-aide-init.pid

# _h_aide_check : audit: AIDE is installed and its database is initialised (an
# initialisation still running says so).
_h_aide_check() (
    _h_have aide || { echo "AIDE is not installed"; exit 1; }
    [ -f "$_H_AIDE_CONF" ] || { echo "$_H_AIDE_CONF does not exist (install aide-common)"; exit 1; }
    [ -s "$_H_AIDE_DB" ] && exit 0
    if [ -f "$_H_AIDE_INIT_PID" ] && kill -0 "$(head -n 1 "$_H_AIDE_INIT_PID")" 2>/dev/null; then
        printf 'the AIDE database is being initialised (pid %s); %s does not exist yet\n' "$(head -n 1 "$_H_AIDE_INIT_PID")" "$_H_AIDE_DB"
    else
        printf 'the AIDE database %s is not initialised\n' "$_H_AIDE_DB"
    fi
    exit 1
)

# _h_aide_init : start initialising the database in the background (on a large file
# system it takes minutes); the audit fails until the database exists.
_h_aide_init() (
    _h_aide_check >/dev/null && exit 0
    _h_have aide || _h_die "AIDE is not installed: apt-get install aide aide-common"
    if [ -f "$_H_AIDE_INIT_PID" ] && kill -0 "$(head -n 1 "$_H_AIDE_INIT_PID")" 2>/dev/null; then exit 0; fi
    mkdir -p /var/lib/aide || exit 1
    setsid sh -c 'umask 027; aide --config "$1" --init >/var/log/aide-init.log 2>&1; [ -s "$2.new" ] && mv -f "$2.new" "$2"; rm -f "$3"' \
        sh "$_H_AIDE_CONF" "$_H_AIDE_DB" "$_H_AIDE_INIT_PID" </dev/null >/dev/null 2>&1 &
    printf '%s\n' "$!" >"$_H_AIDE_INIT_PID"
)

# _h_aide_tools_check : audit: AIDE's configuration checks the audit tools' content.
_h_aide_tools_check() (
    [ -f "$_H_AIDE_CONF" ] || { echo "$_H_AIDE_CONF does not exist"; exit 1; }
    cfg=$(cat "$_H_AIDE_CONF" /etc/aide/aide.conf.d/* 2>/dev/null)
    for t in auditctl auditd ausearch aureport autrace augenrules; do
        printf '%s\n' "$cfg" | grep -Eq "^/(usr/)?s?bin/$t[[:space:]]" || { printf 'AIDE does not check /usr/sbin/%s\n' "$t"; exit 1; }
    done
)

_h_aide_tools_set() (
    w=$(_h_tmpdir) || exit 1
    {
        echo "# Set by maestro hardening: the audit tools' content and attributes."
        for t in auditctl auditd ausearch aureport autrace augenrules; do
            printf '/usr/sbin/%s p+i+n+u+g+s+b+acl+xattrs+sha512\n' "$t"
        done
    } >"$w/a"
    _h_replace /etc/aide/aide.conf.d/70_maestro_audit_tools "$w/a" 0644
    rc=$?
    rm -rf "$w"
    exit "$rc"
)

# _h_sshd_maxstartups_check : audit: MaxStartups start:rate:full is at most 10:30:60
# (start and full no higher, rate no lower).
_h_sshd_maxstartups_check() (
    v=$(_h_sshd_get maxstartups) || { _h_sshd_broken; exit 1; }
    s=${v%%:*} rest=${v#*:}
    r=${rest%%:*} f=${rest#*:}
    [ "$rest" = "$v" ] && { r=100; f=$s; }
    case $s$r$f in *[!0-9]*) printf 'sshd MaxStartups is "%s" (want 10:30:60 or stricter)\n' "$v"; exit 1 ;; esac
    if [ "$s" -le 10 ] && [ "$r" -ge 30 ] && [ "$f" -le 60 ]; then exit 0; fi
    printf 'sshd MaxStartups is %s (want 10:30:60 or stricter)\n' "$v"
    exit 1
)

# _h_sshd_access_check : audit: sshd limits logins with AllowUsers, AllowGroups,
# DenyUsers or DenyGroups.
_h_sshd_access_check() (
    c=$(_h_sshd_T 2>/dev/null) || { _h_sshd_broken; exit 1; }
    printf '%s\n' "$c" | grep -Eq '^(allowusers|allowgroups|denyusers|denygroups) ' && exit 0
    echo "sshd lets every account with a key log in (no AllowUsers, AllowGroups, DenyUsers or DenyGroups)"
    exit 1
)

# _h_auditd_conf_range KEY MIN MAX : audit: auditd.conf KEY is an integer in [MIN, MAX].
_h_auditd_conf_range() (
    v=$(_h_auditd_conf_get "$1")
    case $v in '' | *[!0-9]*) printf 'auditd %s = %s (want %s..%s)\n' "$1" "${v:-unset}" "$2" "$3"; exit 1 ;; esac
    [ "$v" -ge "$2" ] && [ "$v" -le "$3" ] && exit 0
    printf 'auditd %s = %s (want %s..%s)\n' "$1" "$v" "$2" "$3"
    exit 1
)
