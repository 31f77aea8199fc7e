//! The node side of the kill switch: one POSIX sh script per node, sent on
//! the session's stdin and run as root (`sh -s`, or `sudo -n sh -s` for a
//! login user that is not root). Every value in it is quoted with
//! [`sh_quote`]; the script writes only below `/var/lib/maestro/agents`,
//! never through a symlink, and signals only processes in its own mount
//! namespace (on a host that is every process; on a test fleet whose nodes
//! share one PID namespace it is the node's own).
//!
//! The last line it prints is the verdict the controller reads
//! ([`VERDICT_PREFIX`]): `stopped PID…`, `already-stopped`, `remaining
//! PID…` (exit 1), `released`, or `error` (exit 1, the reason on stderr).
//!
//! An agent has two instances on a node (the primary and the preview slot,
//! `agent-NAME.pid` and `agent-NAME.preview.pid`, units `maestro-agent-NAME`
//! and `maestro-agent-NAME-preview`): a kill stops both, and the one marker
//! blocks both from starting again.

use crate::fleet::quote::sh_quote;

/// How every verdict line starts.
pub const VERDICT_PREFIX: &str = "maestro-kill: ";

/// Where the node keeps each agent's state, and the kill marker in it.
pub const AGENTS_DIR: &str = "/var/lib/maestro/agents";
pub const MARKER: &str = "killed";

/// Seconds between SIGTERM and SIGKILL.
pub const TERM_GRACE_SECS: u32 = 5;

/// What the marker records: who engaged the kill switch, when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub agent: String,
    pub by: String,
    pub at: String,
    pub reason: String,
}

impl Marker {
    /// `key=value` lines, like the agent's state file; newlines in values
    /// become spaces so each key stays one line.
    fn text(&self) -> String {
        let one = |s: &str| s.replace(['\n', '\r'], " ");
        format!(
            "agent={}\nby={}\nat={}\nreason={}\n",
            one(&self.agent),
            one(&self.by),
            one(&self.at),
            one(&self.reason)
        )
    }
}

/// Helpers both scripts share.
const PRELUDE: &str = r#"set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022
B=/var/lib/maestro/agents
say() { printf 'maestro-kill: %s\n' "$*"; }
die() { printf '%s\n' "$*" >&2; say error; exit 1; }
uid=
while read -r k v _; do [ "$k" = Uid: ] && { uid=$v; break; }; done </proc/self/status
[ "$uid" = 0 ] || die "the kill switch needs root on the node: connect as root, or as a user with passwordless sudo"
sysd=0
[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && sysd=1
# Every agent this run is about: the ones named, and with ALL=1 every agent
# the node knows (state directories, pidfiles).
# Names found on the node count only when they could be SoT names.
names=$AGENTS
add_name() {
    case $1 in '' | *[!a-z0-9._-]*) return ;; esac
    case " $names " in *" $1 "*) ;; *) names="$names $1" ;; esac
}
if [ "$ALL" = 1 ]; then
    for d in "$B"/*/; do
        [ -d "$d" ] || continue
        d=${d%/}; add_name "${d##*/}"
    done
    for f in /run/maestro/agent-*.pid; do
        [ -e "$f" ] || continue
        f=${f##*/agent-}; f=${f%.pid}; add_name "${f%.preview}"
    done
fi
"#;

const KILL: &str = r#"
# Refuse to write as root through a symlink anywhere on the marker's path.
dir_ok() {
    for d in /var/lib/maestro "$B" "$1"; do
        [ -L "$d" ] && die "$d is a symlink: refusing to write the kill marker through it"
    done
    [ -d "$1" ] || mkdir -p -m 0755 "$1" || die "cannot create $1"
}
mark() {
    D=$B/$1
    dir_ok "$D"
    T=$D/.killed.$$
    # noclobber: the temp file is created, never opened if it exists.
    set -C
    { printf '%s' "$MARK" >"$T"; } 2>/dev/null || die "cannot write the kill marker in $D"
    set +C
    mv -f "$T" "$D/killed" || die "cannot write $D/killed"
}
alive() {
    read -r st <"/proc/$1/stat" 2>/dev/null || return 1
    case ${st##*) } in Z* | X*) return 1 ;; esac
}
ours() { [ "$1" != "$$" ] && [ /proc/$1/ns/mnt -ef /proc/$$/ns/mnt ]; }
# A pidfile names a live session leader of this node with the recorded
# start time, and only root may have written it: set L to its PID.
leader() {
    L=
    [ -f "$1" ] && [ ! -L "$1" ] && [ -O "$1" ] || return 1
    { read -r p; read -r s; } <"$1" 2>/dev/null || return 1
    case $p:$s in *[!0-9:]* | :* | *:) return 1 ;; esac
    ours "$p" || return 1
    read -r st <"/proc/$p/stat" 2>/dev/null || return 1
    r=${st##*) }
    set -f; set -- $r; set +f
    [ "$1" != Z ] && [ "$4" = "$p" ] || return 1
    shift 19
    [ "$1" = "$s" ] || return 1
    L=$p
}
# G: the agents' session leaders (their process groups are signalled);
# P: every other process of this node with MAESTRO_AGENT=NAME in its
# environment. One grep reads every environment; no loop over /proc.
find_procs() {
    G=
    P=
    for a in $names; do
        leader "/run/maestro/agent-$a.pid" && G="$G $L"
        leader "/run/maestro/agent-$a.preview.pid" && G="$G $L"
    done
    if [ "$ALL" = 1 ]; then
        hits=$(grep -lzE '^MAESTRO_AGENT=.' /proc/[0-9]*/environ 2>/dev/null)
    else
        pats=
        for a in $names; do pats="$pats -e MAESTRO_AGENT=$a"; done
        hits=$(grep -lzxF $pats /proc/[0-9]*/environ 2>/dev/null)
    fi
    for f in $hits; do
        q=${f#/proc/}; q=${q%/environ}
        case " $G $P " in *" $q "*) continue ;; esac
        ours "$q" && alive "$q" && P="$P $q"
    done
}
# `kill -SIG -PGID`: dash's kill takes neither `--` nor `-s SIG -PGID`.
signal() {
    for l in $G; do kill "-$1" "-$l" 2>/dev/null; done
    [ -n "$P" ] && kill "-$1" $P 2>/dev/null
}
# Wait up to $1 twentieths of a second for G and P to be gone.
wait_gone() {
    i=0
    while [ "$i" -lt "$1" ]; do
        left=
        for q in $G $P; do alive "$q" && { left=1; break; }; done
        [ -z "$left" ] && return 0
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}
for a in $names; do mark "$a"; done
was=
if [ "$sysd" = 1 ]; then
    for a in $names; do
        for u in "maestro-agent-$a.service" "maestro-agent-$a-preview.service"; do
            systemctl is-active --quiet "$u" 2>/dev/null && was="$was $u"
            systemctl mask --runtime "$u" >/dev/null 2>&1
            systemctl stop "$u" >/dev/null 2>&1
        done
    done
fi
find_procs
stopped="$G$P"
if [ -n "$stopped" ]; then
    signal TERM
    wait_gone $((GRACE * 20)) || { signal KILL; wait_gone 40; }
    # What is left of the leaders' process groups without the variable.
    for l in $G; do kill -KILL "-$l" 2>/dev/null; done
fi
# Confirm from scratch: whatever is found now was not stopped.
find_procs
if [ -n "$G$P" ]; then
    say remaining $G $P
    exit 1
fi
for a in $names; do
    for f in "/run/maestro/agent-$a.pid" "/run/maestro/agent-$a.preview.pid"; do
        [ -f "$f" ] && [ ! -L "$f" ] && rm -f "$f"
    done
done
if [ -n "$stopped$was" ]; then say stopped $stopped; else say already-stopped; fi
"#;

const RELEASE: &str = r#"
for a in $names; do
    case " $KEEP " in *" all "* | *" $a "*) continue ;; esac
    f=$B/$a/killed
    [ -L "$B" ] || [ -L "$B/$a" ] || rm -f "$f" || die "cannot remove $f"
    [ "$sysd" = 1 ] && systemctl unmask --runtime "maestro-agent-$a.service" "maestro-agent-$a-preview.service" >/dev/null 2>&1
done
say released
"#;

/// Agent names are SoT names (lowercase letters, digits, `-`, `_`, `.`), so
/// a space-separated list splits back into them; the list is still quoted.
fn header(agents: &[String], all: bool) -> String {
    format!(
        "AGENTS={}\nALL={}\n",
        sh_quote(&agents.join(" ")),
        if all { 1 } else { 0 }
    )
}

/// Stop `agents` (with `all`: every agent the node knows as well) and leave
/// `marker` for each, then confirm nothing of them runs.
pub fn kill(agents: &[String], all: bool, marker: &Marker) -> String {
    format!(
        "{}MARK={}\nGRACE={TERM_GRACE_SECS}\n{PRELUDE}{KILL}",
        header(agents, all),
        sh_quote(&marker.text())
    )
}

/// Remove the markers of `agents` (with `all`: of every agent the node
/// knows) except those still held by another engaged kill switch (`keep`,
/// which may name `all`), and unmask their units. Nothing is started.
pub fn release(agents: &[String], all: bool, keep: &[String]) -> String {
    format!(
        "{}KEEP={}\n{PRELUDE}{RELEASE}",
        header(agents, all),
        sh_quote(&keep.join(" "))
    )
}
