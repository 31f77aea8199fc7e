# maestro module library: POSIX sh, sent once at the top of every playbook
# script. Every value reaches these functions as a single-quoted argument;
# nothing here evaluates its arguments, except `command` (whose `run`, `unless`
# are commands by definition, rendered with every variable shell-quoted, and
# whose conditions are shell tests the compiler generated from
# `changed_when`/`failed_when`, every literal in them quoted).
#
# Protocol: lines starting with \036M<nonce> on stdout are markers the
# controller parses; everything between `X-begin` and `X-end` markers belongs
# to block X (diff, out) of the current task.
#
# Safety rules for root writes (this runs as root on someone's machine):
# - a file is never written in place: its new content is written inside a
#   private directory (mktemp -d, mode 0700, owned by us) that we `cd` into
#   and verify, its mode and owner are set there, where nobody else can swap
#   it, and it is renamed over the destination;
# - a path that is a symbolic link is refused, never followed, for every
#   module that changes a path (dir, file, template, line, sysctl's file,
#   absent, the pidfile);
# - directories are entered with `cd -P` before anything is changed in them,
#   so a parent swapped for a symlink later cannot redirect the change;
# - a pidfile must live in a directory only we can write, and the process it
#   names must be the one we started (start time, session, user) before it is
#   signalled.
#
# Forks are CPU on every node: builtins (read, case, parameter expansion,
# test, printf) do what they can, attributes and checksums of every path the
# script touches are read with one `stat` and one `sha256sum` at the start
# (_m_prefetch) and kept up to date by the modules that change them.

_m_nl='
'
_m_tab='	'
_m_cache=$_m_nl
_m_pwd=$PWD
_m_privs=
_m_started=$_m_nl
_m_me=${USER:-}
_m_index=0

_m_emit() { printf '\036M%s %s\n' "$_m_nonce" "$*"; }
_m_ok() { _m_status=ok; _m_msg=$*; }
_m_changed() { _m_status=changed; _m_msg=$*; }
_m_fail() { _m_status=failed; _m_msg=$*; }
_m_begin() { _m_status=ok; _m_msg=; _m_keep=0; _m_index=$1; _m_emit begin "$1"; }
_m_end() {
    # A change by a module that does not keep the attribute cache up to date
    # (a command, a package, a user...) may have changed any path.
    [ "$_m_status" = changed ] && [ "$_m_keep" != 1 ] && _m_cache=$_m_nl
    _m_emit end "$1" "$_m_status" "$_m_msg"
}
_m_block() { # name file...: emit files' content as one block
    _m_b=$1; shift
    _m_any=
    for f in "$@"; do [ -s "$f" ] && _m_any=1; done
    [ -n "$_m_any" ] || return 0
    _m_emit "$_m_b-begin"
    for f in "$@"; do
        [ -s "$f" ] || continue
        _m_slurp "$f"
        printf '%s' "$_m_data"
        case $_m_data in *"$_m_nl") ;; *) echo ;; esac
    done
    _m_emit "$_m_b-end"
}
# Read a (text) file into _m_data with builtins; _m_eol=0 when its last line
# has no newline.
_m_slurp() {
    _m_data= _m_eol=1
    while IFS= read -r l; do _m_data=$_m_data$l$_m_nl; done <"$1" || return 1
    [ -z "$l" ] || { _m_data=$_m_data$l; _m_eol=0; }
    return 0
}
_m_cleanup() {
    cd / 2>/dev/null
    # Private directories are empty unless a write failed half-way; rmdir never
    # removes anything else, even if a path was swapped since.
    if [ -n "$_m_privs" ]; then
        set -f; IFS=$_m_nl; set -- $_m_privs; IFS=' 	
'; set +f
        rmdir -- "$@" 2>/dev/null
    fi
    rm -rf -- "$_m_tmp"
}

# --- facts -----------------------------------------------------------------
_m_facts() {
    # Few forks: one uname, builtins for the rest.
    set -f
    # shellcheck disable=SC2046 # hostname, kernel and arch hold no spaces
    set -- $(uname -nrm)
    set +f
    _m_os=unknown _m_os_family= _m_os_version=
    if [ -r /etc/os-release ]; then
        while IFS='=' read -r k v; do
            v=${v#[\"\']}; v=${v%[\"\']}
            case $k in
                ID) _m_os=$v ;;
                VERSION_ID) _m_os_version=$v ;;
                ID_LIKE) _m_os_family=${v%% *} ;;
            esac
        done </etc/os-release
    fi
    [ -n "$_m_os_family" ] || _m_os_family=$_m_os
    _m_pkg=none
    for p in apt-get dnf yum apk; do
        if command -v "$p" >/dev/null 2>&1; then _m_pkg=$p; break; fi
    done
    [ "$_m_pkg" = apt-get ] && _m_pkg=apt
    if [ -d /run/systemd/system ]; then _m_init=systemd; else _m_init=none; fi
    _m_euid
    [ -n "$_m_me" ] || _m_me=$(id -un)
    _m_emit facts "hostname=$1" "kernel=$2" "arch=$3" "os=$_m_os" \
        "os_family=$_m_os_family" "os_version=$_m_os_version" "pkg=$_m_pkg" "init=$_m_init" "user=$_m_me"
}
# Our effective uid, from /proc (no fork); `id -u` where there is no /proc.
_m_euid() {
    _m_uid=
    if [ -r /proc/self/status ]; then
        while read -r k r e _; do [ "$k" = Uid: ] && { _m_uid=$e; break; }; done </proc/self/status
    fi
    [ -n "$_m_uid" ] || _m_uid=$(id -u)
    # $USER may be stale after sudo; root is root.
    [ "$_m_uid" = 0 ] && _m_me=root
}

# --- accounts, read with builtins --------------------------------------------
_m_passwd() { # name -> _m_p_uid _m_p_gid _m_p_home _m_p_shell; false when absent
    while IFS=: read -r n _ u g _ h s; do
        [ "$n" = "$1" ] && { _m_p_uid=$u _m_p_gid=$g _m_p_home=$h _m_p_shell=$s; return 0; }
    done </etc/passwd
    return 1
}
_m_group_entry() { # name -> _m_g_gid _m_g_members; false when absent
    while IFS=: read -r n _ g m; do
        [ "$n" = "$1" ] && { _m_g_gid=$g _m_g_members=$m; return 0; }
    done </etc/group
    return 1
}
_m_group_name() { # gid -> _m_g_name
    _m_g_name=$1
    while IFS=: read -r n _ g _; do [ "$g" = "$1" ] && { _m_g_name=$n; return 0; }; done </etc/group
    return 1
}

# --- path attributes (one batched stat per script, kept up to date) ----------
# _m_cache holds "\n<path>\t<mode> <owner> <group> <sha256|-> <kind>" records;
# a path with a tab or newline in its name is never cached (stat'ed each time).
_m_cacheable() { case $1 in *"$_m_nl"* | *"$_m_tab"* | '') return 1 ;; esac; return 0; }
_m_kind_of() { # stat %F
    case $1 in
        'regular file' | 'regular empty file') _m_kind=file ;;
        directory) _m_kind=dir ;;
        'symbolic link') _m_kind=link ;;
        *) _m_kind=other ;;
    esac
}
_m_prefetch() { # path...: one stat for all, one sha256sum for the regular files
    [ $# -gt 0 ] || return 0
    out=$(stat -c "%n$_m_tab%a %U %G %F" -- "$@" 2>/dev/null)
    files=
    for p in "$@"; do
        _m_cacheable "$p" || continue
        case $_m_nl$out$_m_nl in
            *"$_m_nl$p$_m_tab"*)
                r=$_m_nl$out$_m_nl; r=${r#*"$_m_nl$p$_m_tab"}; r=${r%%"$_m_nl"*}
                set -f; set -- $r; set +f
                m=$1 o=$2 g=$3; shift 3; _m_kind_of "$*"
                _m_remember "$p" "$m $o $g - $_m_kind"
                case $_m_kind:$p in file:*\\*) ;; file:*) files=$files$p$_m_nl ;; esac ;;
            *) _m_remember "$p" "- - - - missing" ;;
        esac
    done
    [ -n "$files" ] || return 0
    set -f; IFS=$_m_nl; set -- $files; IFS=' 	
'; set +f
    sums=$(sha256sum -- "$@" 2>/dev/null)
    for p in "$@"; do
        case $_m_nl$sums$_m_nl in
            *"  $p$_m_nl"*)
                s=$_m_nl$sums$_m_nl; s=${s%%"  $p$_m_nl"*}; s=${s##*"$_m_nl"}
                _m_stat "$p"
                _m_remember "$p" "$_m_mode $_m_owner $_m_group $s file" ;;
        esac
    done
}
_m_remember() { # path record
    _m_cacheable "$1" || return 0
    _m_forget "$1"
    _m_cache=$_m_cache$1$_m_tab$2$_m_nl
}
_m_forget() {
    case $_m_cache in
        *"$_m_nl$1$_m_tab"*)
            a=${_m_cache%%"$_m_nl$1$_m_tab"*}
            b=${_m_cache#*"$_m_nl$1$_m_tab"}; b=${b#*"$_m_nl"}
            _m_cache=$a$_m_nl$b ;;
    esac
}
# Attributes of a path, never following a symlink at its end:
# _m_kind (file dir link other missing), _m_mode (octal, no leading 0),
# _m_owner, _m_group, _m_sha (sha256 or -).
_m_stat() {
    case $_m_cache in
        *"$_m_nl$1$_m_tab"*) r=${_m_cache#*"$_m_nl$1$_m_tab"}; r=${r%%"$_m_nl"*} ;;
        *)
            r=$(stat -c '%a %U %G - %F' -- "$1" 2>/dev/null) || r='- - - - missing'
            set -f; set -- "$1" $r; set +f
            _m_mode=$2 _m_owner=$3 _m_group=$4 _m_sha=$5; shift 5; _m_kind_of "$*"
            [ "$_m_mode" = - ] && _m_kind=missing
            return 0 ;;
    esac
    set -f; set -- $r; set +f
    _m_mode=$1 _m_owner=$2 _m_group=$3 _m_sha=$4 _m_kind=$5
}
_m_octal() { # mode -> _m_oct without leading zeros ("0644" -> "644")
    _m_oct=$1
    while [ "${_m_oct#0}" != "$_m_oct" ] && [ "${#_m_oct}" -gt 1 ]; do _m_oct=${_m_oct#0}; done
}
# What differs between the wanted mode/owner/group (empty: keep) and the
# attributes _m_stat read: _m_attr_changes, " mode=0644 owner=x".
_m_attr_diff() { # mode owner group
    _m_attr_changes=
    if [ -n "$1" ]; then _m_octal "$1"; [ "$_m_oct" = "$_m_mode" ] || _m_attr_changes=" mode=$1"; fi
    [ -z "$2" ] || [ "$2" = "$_m_owner" ] || _m_attr_changes="$_m_attr_changes owner=$2"
    [ -z "$3" ] || [ "$3" = "$_m_group" ] || _m_attr_changes="$_m_attr_changes group=$3"
}

# --- safe changes ----------------------------------------------------------------
_m_split() { # path -> _m_dirname _m_base
    case $1 in
        */*) _m_dirname=${1%/*}; _m_base=${1##*/}; [ -n "$_m_dirname" ] || _m_dirname=/ ;;
        *) _m_dirname=. _m_base=$1 ;;
    esac
}
# cd into a directory's physical path: the shell holds it, so a parent swapped
# for a symlink afterwards cannot redirect what we do in it.
_m_enter() {
    case $1 in /*) cd -P -- "$1" 2>/dev/null ;; *) cd -P -- "$_m_pwd" 2>/dev/null && cd -P -- "./$1" 2>/dev/null ;; esac
}
_m_leave() { cd -- "$_m_pwd" 2>/dev/null || cd /; }
_m_owner_arg() { # owner group -> _m_og for chown ("" when nothing to do)
    _m_og=
    if [ -n "$1" ] && [ -n "$2" ]; then _m_og=$1:$2
    elif [ -n "$1" ]; then _m_og=$1
    elif [ -n "$2" ]; then _m_og=:$2; fi
}
# Enter a private directory (ours, mode 0700) inside the current directory,
# creating it on first use; one per destination directory per script.
_m_private() {
    here=${PWD%/}
    case $_m_privs in
        *"$_m_nl$here/.maestro-"*)
            p=${_m_privs#*"$_m_nl$here/.maestro-"}; p=.maestro-${p%%"$_m_nl"*} ;;
        *)
            p=$(mktemp -d ./.maestro-XXXXXXXX) || return 1
            p=${p#./}
            _m_privs=$_m_privs$_m_nl$here/$p ;;
    esac
    # Verify what we entered: ours, and not a symlink someone swapped in.
    cd -P -- "./$p" 2>/dev/null && [ "$PWD" = "$here/$p" ] && [ -O . ] && return 0
    cd -P -- "$here" 2>/dev/null
    return 1
}
# Write $_m_content to path with mode, owner, group (all resolved by the
# caller), atomically, never through a symlink.
_m_rm_new() { rm -f ./new; _m_leave; }
_m_write() { # path mode owner group sha
    _m_split "$1"
    _m_enter "$_m_dirname" || { _m_fail "directory $_m_dirname does not exist"; return 1; }
    if [ -L "$_m_base" ]; then _m_leave; _m_fail "$1 is a symbolic link; refusing to write through it"; return 1; fi
    if [ -d "$_m_base" ]; then _m_leave; _m_fail "$1 is a directory"; return 1; fi
    _m_private || { _m_leave; _m_fail "cannot create a private temporary directory in $_m_dirname"; return 1; }
    _m_octal "$2"
    # Modes up to 0666 come from the umask at creation: no chmod needed.
    case $_m_oct in
        [0-6][0-6][0-6] | [0-6][0-6] | [0-6])
            v=$((~0$_m_oct & 0777))
            umask "$(((v >> 6) & 7))$(((v >> 3) & 7))$((v & 7))"
            printf '%s' "$_m_content" >./new
            w=$?
            umask 022
            [ "$w" = 0 ] || { _m_rm_new; _m_fail "cannot write $1"; return 1; } ;;
        *)
            umask 077
            printf '%s' "$_m_content" >./new
            w=$?
            umask 022
            [ "$w" = 0 ] && chmod "$2" ./new || { _m_rm_new; _m_fail "cannot write $1 (mode $2)"; return 1; } ;;
    esac
    own=$3 grp=$4
    [ "$own" != "$_m_me" ] || own=
    [ "$_m_me" != root ] || [ "$grp" != root ] || grp=
    _m_owner_arg "$own" "$grp"
    if [ -n "$_m_og" ]; then chown -h -- "$_m_og" ./new || { _m_rm_new; _m_fail "cannot set the owner of $1 to $_m_og"; return 1; }; fi
    mv -fT -- ./new "../$_m_base" || { _m_rm_new; _m_fail "cannot write $1"; return 1; }
    _m_leave
    _m_octal "$2"
    _m_remember "$1" "$_m_oct ${3:-$_m_me} ${4:--} ${5:--} file"
    [ -n "$4" ] || _m_forget "$1"
    return 0
}
# Change mode/owner/group of an existing path in place, never through a
# symlink: a directory is entered and changed as `.`; a file is changed by
# name inside its held parent right after the symlink check (chmod has no
# -h; chown -h is used).
_m_fix_attrs() { # path mode owner group
    _m_stat "$1"
    _m_split "$1"
    _m_enter "$_m_dirname" || { _m_fail "directory $_m_dirname does not exist"; return 1; }
    here=${PWD%/}
    if [ -L "$_m_base" ]; then _m_leave; _m_fail "$1 is a symbolic link; refusing to change it"; return 1; fi
    target=./$_m_base
    if [ -d "$_m_base" ]; then
        { cd -P -- "./$_m_base" && [ "$PWD" = "$here/$_m_base" ]; } || { _m_leave; _m_fail "$1 changed while it was being checked"; return 1; }
        target=.
    fi
    if [ -n "$2" ]; then
        _m_octal "$2"
        [ "$_m_oct" = "$_m_mode" ] || chmod "$2" "$target" || { _m_leave; _m_fail "cannot set the mode of $1"; return 1; }
    fi
    o=$3 g=$4
    [ "$o" != "$_m_owner" ] || o=
    [ "$g" != "$_m_group" ] || g=
    _m_owner_arg "$o" "$g"
    if [ -n "$_m_og" ]; then chown -h -- "$_m_og" "$target" || { _m_leave; _m_fail "cannot set the owner of $1 to $_m_og"; return 1; }; fi
    _m_leave
    [ -z "$2" ] || _m_mode=$_m_oct
    _m_remember "$1" "$_m_mode ${3:-$_m_owner} ${4:-$_m_group} $_m_sha $_m_kind"
    return 0
}
_m_diff() { # label old new sensitive (files); only with --diff, never for sensitive content
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
    _m_keep=1
    _m_stat "$1"
    case $_m_kind in
        link) _m_fail "$1 is a symbolic link; refusing to change it (point the task at the real directory)"; return ;;
        dir)
            _m_attr_diff "$2" "$3" "$4"
            [ -n "$_m_attr_changes" ] || { _m_ok "$1"; return; }
            if [ "$_m_check" = 1 ]; then _m_changed "$1:$_m_attr_changes"; return; fi
            _m_fix_attrs "$1" "$2" "$3" "$4" || return
            _m_changed "$1:$_m_attr_changes"; return ;;
        missing) ;;
        *) _m_fail "$1 exists and is not a directory"; return ;;
    esac
    if [ "$_m_check" = 1 ]; then _m_changed "would create $1"; return; fi
    _m_split "$1"
    [ -d "$_m_dirname" ] || mkdir -p -- "$_m_dirname" || { _m_fail "cannot create $_m_dirname"; return; }
    _m_enter "$_m_dirname" || { _m_fail "cannot enter $_m_dirname"; return; }
    here=${PWD%/}
    mkdir ${2:+-m "$2"} -- "./$_m_base" || { _m_leave; _m_fail "cannot create $1"; return; }
    # Set the owner on the directory we just made, entered, not on a name.
    if [ -n "$3$4" ]; then
        { cd -P -- "./$_m_base" && [ "$PWD" = "$here/$_m_base" ]; } || { _m_leave; _m_fail "$1 was replaced while it was being created"; return; }
        o=$3 g=$4
        [ "$o" != "$_m_me" ] || o=
        [ "$_m_me" != root ] || [ "$g" != root ] || g=
        _m_owner_arg "$o" "$g"
        if [ -n "$_m_og" ]; then chown -- "$_m_og" . || { _m_leave; _m_fail "cannot set the owner of $1 to $_m_og"; return; }; fi
    fi
    _m_leave
    m=$2; [ -n "$m" ] || m=755
    _m_octal "$m"
    if [ -n "$4" ]; then _m_remember "$1" "$_m_oct ${3:-$_m_me} $4 - dir"; else _m_forget "$1"; fi
    _m_changed "created $1"
}

# file and template: content given (has_content 1) or attributes only (0).
_m_file() { # path has_content content mode owner group sensitive sha256
    _m_keep=1
    _m_stat "$1"
    case $_m_kind in
        link) _m_fail "$1 is a symbolic link; refusing to write through it"; return ;;
        dir) _m_fail "$1 is a directory"; return ;;
        other) _m_fail "$1 is not a regular file"; return ;;
    esac
    if [ "$2" = 0 ]; then
        [ "$_m_kind" = file ] || { _m_fail "$1 does not exist (give content or src to create it)"; return; }
        _m_attr_diff "$4" "$5" "$6"
        [ -n "$_m_attr_changes" ] || { _m_ok "$1"; return; }
        if [ "$_m_check" = 1 ]; then _m_changed "$1:$_m_attr_changes"; return; fi
        _m_fix_attrs "$1" "$4" "$5" "$6" || return
        _m_changed "$1:$_m_attr_changes"; return
    fi
    _m_content=$3
    same=0
    if [ "$_m_kind" = file ]; then
        if [ "$_m_sha" != - ]; then
            [ "$_m_sha" = "$8" ] && same=1
        else
            printf '%s' "$3" >"$_m_tmp/new" || { _m_fail "cannot write a temporary file"; return; }
            cmp -s -- "$1" "$_m_tmp/new" && same=1
        fi
    fi
    # Attributes nobody asked for are kept from the file it replaces.
    if [ "$_m_kind" = file ]; then
        m=${4:-$_m_mode} o=${5:-$_m_owner} g=${6:-$_m_group}
    else
        m=${4:-644} o=$5 g=$6
    fi
    if [ "$same" = 1 ]; then
        _m_attr_diff "$4" "$5" "$6"
        [ -n "$_m_attr_changes" ] || { _m_ok "$1"; return; }
        if [ "$_m_check" = 1 ]; then _m_changed "$1:$_m_attr_changes"; return; fi
        # Rewritten, not chmod'ed in place: the same content, the new attributes.
        _m_write "$1" "$m" "$o" "$g" "$8" || return
        _m_changed "$1:$_m_attr_changes"; return
    fi
    if [ "$_m_diff" = 1 ]; then
        printf '%s' "$3" >"$_m_tmp/new"
        if [ "$_m_kind" = file ]; then _m_diff "$1" "$1" "$_m_tmp/new" "$7"; else : >"$_m_tmp/empty"; _m_diff "$1" "$_m_tmp/empty" "$_m_tmp/new" "$7"; fi
    fi
    if [ "$_m_check" = 1 ]; then _m_changed "would write $1"; return; fi
    _m_write "$1" "$m" "$o" "$g" "$8" || return
    _m_changed "wrote $1"
}

# The line module's matchers: how a line is compared with `regexp` (or `line`).
#   exact TEXT: the whole line is TEXT; prefix TEXT: starts with TEXT;
#   contains TEXT; ere REGEXP: grep -E (one fork, only then).
_m_line_scan() { # file kind pattern -> _m_last (last matching line number), _m_hits ("|n|n|")
    _m_last=0 _m_hits='|'
    if [ "$2" = ere ]; then
        out=$(grep -nE -e "$3" -- "$1" 2>/dev/null)
        [ $? -le 1 ] || return 1
        rest=$out
        while [ -n "$rest" ]; do
            l=${rest%%"$_m_nl"*}; n=${l%%:*}
            _m_last=$n _m_hits=$_m_hits$n'|'
            case $rest in *"$_m_nl"*) rest=${rest#*"$_m_nl"} ;; *) rest= ;; esac
        done
        return 0
    fi
    n=0
    while IFS= read -r l || [ -n "$l" ]; do
        n=$((n + 1))
        case $2 in
            exact) [ "$l" = "$3" ] || continue ;;
            prefix) case $l in "$3"*) ;; *) continue ;; esac ;;
            contains) case $l in *"$3"*) ;; *) continue ;; esac ;;
        esac
        _m_last=$n _m_hits=$_m_hits$n'|'
    done <"$1"
}
# The file with `line` applied, in _m_content; _m_same=1 when unchanged.
_m_line_apply() { # file line state kind pattern exact_kind
    _m_line_scan "$1" "$4" "$5" || return 1
    if [ "$3" = present ] && [ "$_m_last" = 0 ] && [ "$4" != exact ]; then
        # No line matches `regexp`: the line itself may be there already.
        _m_line_scan "$1" exact "$2" || return 1
        [ "$_m_last" != 0 ] && _m_hits='|'
        [ "$_m_last" != 0 ] && _m_last=-1
    fi
    _m_content= _m_same=1 n=0
    while IFS= read -r l || { [ -n "$l" ] && _m_same=0; }; do
        n=$((n + 1))
        case $_m_hits in
            *"|$n|"*)
                if [ "$3" = absent ]; then _m_same=0; continue; fi
                if [ "$n" = "$_m_last" ]; then
                    [ "$l" = "$2" ] || _m_same=0
                    l=$2
                fi ;;
        esac
        _m_content=$_m_content$l$_m_nl
    done <"$1"
    if [ "$3" = present ] && [ "$_m_last" = 0 ]; then _m_content=$_m_content$2$_m_nl; _m_same=0; fi
    return 0
}
_m_line() { # path line regexp-kind regexp state create mode owner group sensitive
    _m_keep=1
    _m_stat "$1"
    case $_m_kind in
        link) _m_fail "$1 is a symbolic link; refusing to edit through it"; return ;;
        dir | other) _m_fail "$1 is not a regular file"; return ;;
        missing)
            if [ "$5" = absent ]; then _m_ok "$1 does not exist"; return; fi
            if [ "$6" != 1 ]; then _m_fail "$1 does not exist (set create = true to create it)"; return; fi
            : >"$_m_tmp/old"
            _m_line_apply "$_m_tmp/old" "$2" "$5" "$3" "$4" || { _m_fail "invalid regexp"; return; }
            _m_same=0
            m=${7:-644} o=$8 g=$9 ;;
        file)
            _m_line_apply "$1" "$2" "$5" "$3" "$4" || { _m_fail "cannot read $1 (or invalid regexp)"; return; }
            m=${7:-$_m_mode} o=${8:-$_m_owner} g=${9:-$_m_group} ;;
    esac
    _m_attr_changes=
    [ "$_m_kind" = missing ] || _m_attr_diff "$7" "$8" "$9"
    if [ "$_m_same" = 1 ] && [ -z "$_m_attr_changes" ]; then _m_ok "$1"; return; fi
    if [ "$_m_kind" = file ] && [ "$_m_check" != 1 ]; then
        # What gets written is read from a copy cp made without following a
        # symlink (O_NOFOLLOW): a file swapped for a link meanwhile is refused.
        cp -P -- "$1" "$_m_tmp/old" 2>/dev/null && [ ! -L "$_m_tmp/old" ] || { _m_fail "$1 changed while it was being read; refusing to edit it"; return; }
        _m_line_apply "$_m_tmp/old" "$2" "$5" "$3" "$4" || { _m_fail "cannot read $1"; return; }
    fi
    if [ "$_m_same" = 0 ] && [ "$_m_diff" = 1 ]; then
        printf '%s' "$_m_content" >"$_m_tmp/new"
        if [ "$_m_kind" = file ]; then _m_diff "$1" "$1" "$_m_tmp/new" "${10}"; else _m_diff "$1" "$_m_tmp/old" "$_m_tmp/new" "${10}"; fi
    fi
    what="edited $1"
    [ "$_m_same" = 0 ] || what="$1:$_m_attr_changes"
    if [ "$_m_check" = 1 ]; then
        [ "$_m_same" = 0 ] && what="would edit $1"
        _m_changed "$what"; return
    fi
    _m_write "$1" "$m" "$o" "$g" || return
    _m_forget "$1"
    _m_changed "$what"
}

_m_absent() { # path
    _m_keep=1
    _m_stat "$1"
    if [ "$_m_kind" = missing ]; then _m_ok "$1 is absent"; return; fi
    _m_split "$1"
    case $_m_base in '' | . | ..) _m_fail "refusing to remove $1"; return ;; esac
    if [ "$_m_check" = 1 ]; then _m_changed "would remove $1"; return; fi
    # rm in the held parent: a link is removed itself, never followed.
    _m_enter "$_m_dirname" || { _m_fail "cannot enter $_m_dirname"; return; }
    rm -rf -- "./$_m_base" || { _m_leave; _m_fail "cannot remove $1"; return; }
    _m_leave
    _m_remember "$1" "- - - - missing"
    _m_changed "removed $1"
}

# `command`: $6 and $7 are the compiler's shell tests for failed_when and
# changed_when ('' for the defaults: failed when rc != 0, always changed);
# $8 = 1 when they read stdout/stderr.
_m_command() { # run creates removes unless chdir failed_when changed_when capture
    if [ -n "$2" ] && [ -e "$2" ]; then _m_ok "skipped: $2 exists"; return; fi
    if [ -n "$3" ] && [ ! -e "$3" ]; then _m_ok "skipped: $3 does not exist"; return; fi
    if [ -n "$4" ] && (cd "${5:-.}" && sh -c "$4") >/dev/null 2>&1; then _m_ok "skipped: unless-command succeeded"; return; fi
    if [ "$_m_check" = 1 ]; then
        if [ "$7" = false ]; then _m_ok "not run in check mode (changed_when is false)"; else _m_changed "would run"; fi
        return
    fi
    if [ "$8" = 1 ]; then
        (cd "${5:-.}" && sh -c "$1") </dev/null >"$_m_tmp/out" 2>"$_m_tmp/err"
        rc=$?
        _m_slurp "$_m_tmp/out"; _m_stdout=$_m_data
        _m_slurp "$_m_tmp/err"; _m_stderr=$_m_data
        while [ "${_m_stdout%"$_m_nl"}" != "$_m_stdout" ]; do _m_stdout=${_m_stdout%"$_m_nl"}; done
        while [ "${_m_stderr%"$_m_nl"}" != "$_m_stderr" ]; do _m_stderr=${_m_stderr%"$_m_nl"}; done
        _m_block out "$_m_tmp/out" "$_m_tmp/err"
    else
        (cd "${5:-.}" && sh -c "$1") </dev/null >"$_m_tmp/out" 2>&1
        rc=$?
        _m_block out "$_m_tmp/out"
    fi
    if [ -n "$6" ]; then
        if eval "$6"; then _m_fail "failed_when is true (exit code $rc)"; return; fi
    elif [ "$rc" -ne 0 ]; then _m_fail "exit code $rc"; return; fi
    if [ -n "$7" ] && ! eval "$7"; then _m_ok "ran (exit code $rc; changed_when is false)"; return; fi
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

# --- services ------------------------------------------------------------------
# The process a pidfile names, if it is still the one we started: the pidfile
# holds its PID and its start time (/proc/PID/stat field 22); the process must
# still have that start time (no PID reuse) and lead its own session (setsid,
# as we start it). -> _m_svc_pid and its real uid _m_svc_uid, or false.
_m_svc_running() { # pidfile
    _m_svc_pid=
    [ -f "$1" ] && [ ! -L "$1" ] || return 1
    { read -r pid; read -r start; } <"$1" 2>/dev/null
    case $pid:$start in *[!0-9:]* | :* | *:) return 1 ;; esac
    read -r st <"/proc/$pid/stat" 2>/dev/null || return 1
    r=${st##*) }
    set -f; set -- $r; set +f
    # $1 state, $4 session, ${20} start time
    [ "$1" != Z ] && [ "$4" = "$pid" ] || return 1
    shift 19
    [ "$1" = "$start" ] || return 1
    _m_svc_uid=
    while read -r k ru _; do [ "$k" = Uid: ] && { _m_svc_uid=$ru; break; }; done <"/proc/$pid/status" 2>/dev/null
    _m_svc_pid=$pid
}
# A pidfile may only live where nobody but us (root, or the login user
# without become) can write: otherwise anyone who can write there decides
# what we overwrite and which process we kill.
_m_svc_pidfile_ok() { # pidfile
    _m_split "$1"
    _m_stat "$_m_dirname"
    case $_m_kind in
        missing)
            [ "$_m_check" = 1 ] && return 0
            mkdir -p -m 0755 -- "$_m_dirname" || { _m_fail "cannot create $_m_dirname for the pidfile"; return 1; }
            _m_forget "$_m_dirname"; _m_stat "$_m_dirname" ;;
        dir) ;;
        link) _m_fail "the pidfile's directory $_m_dirname is a symbolic link; refusing it"; return 1 ;;
        *) _m_fail "the pidfile's directory $_m_dirname is not a directory"; return 1 ;;
    esac
    case $_m_mode in *[2367]? | *[2367]) _m_fail "pidfile $1 is in $_m_dirname, which others can write (mode $_m_mode); keep pidfiles where only $_m_me can write, e.g. /run/maestro"; return 1 ;; esac
    [ "$_m_owner" = "$_m_me" ] || [ "$_m_owner" = root ] || { _m_fail "pidfile $1 is in $_m_dirname, owned by $_m_owner; keep pidfiles where only $_m_me can write, e.g. /run/maestro"; return 1; }
    [ ! -L "$1" ] || { _m_fail "pidfile $1 is a symbolic link; refusing it"; return 1; }
    return 0
}
_m_svc_stop() { # pid: the whole process group we started (a `sh -c` wrapper and what it runs)
    kill -TERM "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null
    i=0
    while kill -0 "-$1" 2>/dev/null && [ $i -lt 50 ]; do
        # Our own child (started earlier in this script) stays a zombie until reaped.
        read -r st <"/proc/$1/stat" 2>/dev/null && case ${st##*) } in Z*) wait "$1" 2>/dev/null; continue ;; esac
        sleep 0.1; i=$((i + 1))
    done
    kill -0 "-$1" 2>/dev/null && kill -KILL "-$1" 2>/dev/null
    return 0
}
_m_service() { # name state enabled(''|0|1) command pidfile user
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
    # No systemd: a process in its own session, tracked by a root-only pidfile.
    [ -n "$5" ] || { _m_fail "no systemd on this node: set pidfile (and command) for service $1"; return; }
    _m_svc_pidfile_ok "$5" || return
    user=${6:-$_m_me}
    if [ "$user" = "$_m_me" ]; then uid=$_m_uid; gid=
    elif _m_passwd "$user"; then uid=$_m_p_uid; gid=$_m_p_gid
    elif [ "$_m_check" = 1 ]; then uid=none; gid=
    else _m_fail "service $1: there is no user $user"; return; fi
    running=0 as_wanted=0
    if _m_svc_running "$5"; then running=1; [ "$_m_svc_uid" = "$uid" ] && as_wanted=1; fi
    case $2 in
        started) [ "$as_wanted" = 1 ] && { _m_ok "$1 is running"; return; } ;;
        stopped) [ "$running" = 0 ] && { _m_ok "$1 is stopped"; return; } ;;
        restarted)
            # Started by this very script after the change that asked for the
            # restart: it already runs what the change made.
            case $_m_started in
                *"$_m_nl$1$_m_tab"*)
                    at=${_m_started#*"$_m_nl$1$_m_tab"}; at=${at%%"$_m_nl"*}
                    if [ "${_m_notified_at:--1}" -lt "$at" ]; then _m_ok "$1 was started after the change"; return; fi ;;
            esac ;;
    esac
    if [ "$_m_check" = 1 ]; then
        [ "$2" = stopped ] || _m_started=$_m_started$1$_m_tab$_m_index$_m_nl
        _m_changed "would $2 $1"; return
    fi
    [ "$running" = 0 ] || _m_svc_stop "$_m_svc_pid"
    if [ "$2" != stopped ]; then
        [ -n "$4" ] || { _m_fail "service $1 has no command to start it"; return; }
        command -v setsid >/dev/null 2>&1 || { _m_fail "service $1: no setsid on this node"; return; }
        if [ "$user" = "$_m_me" ]; then
            setsid sh -c "$4" </dev/null >/dev/null 2>&1 &
        elif [ "$_m_uid" != 0 ]; then
            _m_fail "service $1: only root can start it as $user"; return
        elif command -v setpriv >/dev/null 2>&1; then
            HOME=$_m_p_home setsid setpriv --reuid "$uid" --regid "$gid" --init-groups -- sh -c "$4" </dev/null >/dev/null 2>&1 &
        else
            setsid su -s /bin/sh -c "$4" -- "$user" </dev/null >/dev/null 2>&1 &
        fi
        pid=$! name=$1 pidfile=$5
        read -r st <"/proc/$pid/stat" || { _m_fail "service $name did not start"; return; }
        r=${st##*) }; set -f; set -- $r; set +f; shift 19
        printf '%s\n%s\n' "$pid" "$1" >"$pidfile" || { _m_fail "cannot write $pidfile"; return; }
        _m_started=$_m_started$name$_m_tab$_m_index$_m_nl
        set -- "$name" "$2"
    else
        rm -f -- "$5"
    fi
    _m_changed "$2 $1"
}

# --- accounts --------------------------------------------------------------------
_m_group() { # name state system gid
    _m_keep=1 # no path changes
    if _m_group_entry "$1"; then
        if [ "$2" = absent ]; then
            if [ "$_m_check" = 1 ]; then _m_changed "would remove group $1"; return; fi
            groupdel "$1" >"$_m_tmp/out" 2>&1 || { _m_block out "$_m_tmp/out"; _m_fail "groupdel $1 failed"; return; }
            _m_changed "removed group $1"; return
        fi
        [ -z "$4" ] || [ "$4" = "$_m_g_gid" ] || {
            if [ "$_m_check" = 1 ]; then _m_changed "would change the gid of $1 to $4"; return; fi
            groupmod -g "$4" -- "$1" >"$_m_tmp/out" 2>&1 || { _m_block out "$_m_tmp/out"; _m_fail "cannot change the gid of $1"; return; }
            _m_changed "group $1: gid=$4"; return
        }
        _m_ok "group $1 exists"; return
    fi
    [ "$2" = absent ] && { _m_ok "group $1 is absent"; return; }
    if [ "$_m_check" = 1 ]; then _m_changed "would create group $1"; return; fi
    name=$1 system=$3 gid=$4
    if command -v groupadd >/dev/null 2>&1; then
        set --
        [ "$system" = 1 ] && set -- "$@" -r
        [ -n "$gid" ] && set -- "$@" -g "$gid"
        groupadd "$@" -- "$name" >"$_m_tmp/out" 2>&1
    else
        set --
        [ "$system" = 1 ] && set -- "$@" -S
        [ -n "$gid" ] && set -- "$@" -g "$gid"
        addgroup "$@" "$name" >"$_m_tmp/out" 2>&1
    fi || { _m_block out "$_m_tmp/out"; _m_fail "cannot create group $name"; return; }
    _m_changed "created group $name"
}

_m_user() { # name state system home shell uid group groups(comma-separated) create_home
    name=$1
    # No path changes, unless a home directory is made (or removed).
    [ "$9" = 1 ] || _m_keep=1
    if _m_passwd "$name"; then
        if [ "$2" = absent ]; then
            if [ "$_m_check" = 1 ]; then _m_changed "would remove user $name"; return; fi
            userdel "$name" >"$_m_tmp/out" 2>&1 || { _m_block out "$_m_tmp/out"; _m_fail "userdel $name failed"; return; }
            _m_changed "removed user $name"; return
        fi
        # Compare what was asked for with the account as it is.
        changes=
        [ -z "$4" ] || [ "$4" = "$_m_p_home" ] || changes="$changes home=$4"
        [ -z "$5" ] || [ "$5" = "$_m_p_shell" ] || changes="$changes shell=$5"
        [ -z "$6" ] || [ "$6" = "$_m_p_uid" ] || changes="$changes uid=$6"
        if [ -n "$7" ]; then
            _m_group_name "$_m_p_gid"
            [ "$7" = "$_m_g_name" ] || [ "$7" = "$_m_p_gid" ] || changes="$changes group=$7"
        fi
        missing=
        if [ -n "$8" ]; then
            IFS=,; set -f
            for g in $8; do
                if _m_group_entry "$g"; then
                    case ,$_m_g_members, in *",$name,"*) ;; *) missing=$missing,$g ;; esac
                else missing=$missing,$g; fi
            done
            IFS=' 	
'; set +f
            [ -z "$missing" ] || changes="$changes groups+=${missing#,}"
        fi
        [ -n "$changes" ] || { _m_ok "user $name exists"; return; }
        if [ "$_m_check" = 1 ]; then _m_changed "would change user $name:$changes"; return; fi
        home=$4 shell=$5 uid=$6 group=$7
        set --
        case $changes in *home=*) set -- "$@" -d "$home" ;; esac
        case $changes in *shell=*) set -- "$@" -s "$shell" ;; esac
        case $changes in *uid=*) set -- "$@" -u "$uid" ;; esac
        case $changes in *group=*) set -- "$@" -g "$group" ;; esac
        [ -z "$missing" ] || set -- "$@" -a -G "${missing#,}"
        usermod "$@" -- "$name" >"$_m_tmp/out" 2>&1 || { _m_block out "$_m_tmp/out"; _m_fail "cannot change user $name"; return; }
        _m_changed "user $name:$changes"; return
    fi
    [ "$2" = absent ] && { _m_ok "user $name is absent"; return; }
    if [ "$_m_check" = 1 ]; then _m_changed "would create user $name"; return; fi
    system=$3 home=$4 shell=$5 uid=$6 group=$7 groups=$8 mkhome=$9
    # The usual order: the group first, then the user. A group named like the
    # user becomes its primary group (useradd would refuse to create it again).
    [ -n "$group" ] || ! _m_group_entry "$name" || group=$name
    # Build the argument list with set --: values never go through word splitting.
    if command -v useradd >/dev/null 2>&1; then
        if [ "$mkhome" = 1 ]; then set -- -m; else set -- -M; fi
        [ "$system" = 1 ] && set -- "$@" -r
        [ -n "$home" ] && set -- "$@" -d "$home"
        [ -n "$shell" ] && set -- "$@" -s "$shell"
        [ -n "$uid" ] && set -- "$@" -u "$uid"
        [ -n "$group" ] && set -- "$@" -g "$group"
        [ -n "$groups" ] && set -- "$@" -G "$groups"
        useradd "$@" -- "$name" >"$_m_tmp/out" 2>&1
    else
        if [ "$mkhome" = 1 ]; then set -- -D; else set -- -D -H; fi
        [ "$system" = 1 ] && set -- "$@" -S
        [ -n "$home" ] && set -- "$@" -h "$home"
        [ -n "$shell" ] && set -- "$@" -s "$shell"
        [ -n "$uid" ] && set -- "$@" -u "$uid"
        [ -n "$group" ] && set -- "$@" -G "$group"
        adduser "$@" "$name" >"$_m_tmp/out" 2>&1
    fi || { _m_block out "$_m_tmp/out"; _m_fail "cannot create user $name"; return; }
    _m_changed "created user $name"
}

_m_sysctl() { # key value persist-file proc-path
    _m_keep=1
    [ -r "$4" ] || { _m_fail "unknown sysctl $1"; return; }
    read -r cur <"$4"
    set -f; set -- "$1" "$2" "$3" "$4" $cur; set +f
    key=$1 value=$2 file=$3 path=$4; shift 4; cur=$*
    changes=
    [ "$cur" = "$value" ] || changes="runtime"
    if [ -n "$file" ]; then
        _m_stat "$file"
        case $_m_kind in
            link) _m_fail "$file is a symbolic link; refusing to write through it"; return ;;
            file) found=0
                while IFS= read -r l; do [ "$l" = "$key = $value" ] && { found=1; break; }; done <"$file"
                [ "$found" = 1 ] || changes="$changes persistent" ;;
            missing) changes="$changes persistent" ;;
            *) _m_fail "$file is not a regular file"; return ;;
        esac
    fi
    [ -n "$changes" ] || { _m_ok "$key = $value"; return; }
    if [ "$_m_check" = 1 ]; then _m_changed "would set $key = $value (${changes# })"; return; fi
    case $changes in *runtime*) printf '%s\n' "$value" >"$path" || { _m_fail "cannot set $key"; return; } ;; esac
    case $changes in *persistent*)
        _m_split "$file"
        [ -d "$_m_dirname" ] || mkdir -p -- "$_m_dirname" || { _m_fail "cannot create $_m_dirname"; return; }
        _m_content=
        if [ "$_m_kind" = file ]; then
            cp -P -- "$file" "$_m_tmp/old" 2>/dev/null && [ ! -L "$_m_tmp/old" ] || { _m_fail "$file changed while it was being read"; return; }
            while IFS= read -r l || [ -n "$l" ]; do
                k=${l%%=*}; set -f; set -- $k; set +f
                [ "$*" = "$key" ] || _m_content=$_m_content$l$_m_nl
            done <"$_m_tmp/old"
            m=$_m_mode o=$_m_owner g=$_m_group
        else
            m=644 o= g=
        fi
        _m_content=$_m_content"$key = $value"$_m_nl
        _m_write "$file" "$m" "$o" "$g" || return
        _m_forget "$file" ;;
    esac
    _m_changed "$key = $value"
}

_m_checksum() { # path sha256
    _m_keep=1
    _m_stat "$1"
    if [ "$_m_kind" = missing ] && [ "$_m_check" = 1 ]; then
        _m_status=skipped; _m_msg="$1 is not there yet; checked after the tasks before it run"; return
    fi
    # The sum of what an earlier task wrote, or of what the prefetch read.
    sum=$_m_sha
    if [ "$sum" = - ]; then
        [ -f "$1" ] || { _m_fail "$1 does not exist"; return; }
        if command -v sha256sum >/dev/null 2>&1; then sum=$(sha256sum -- "$1") && sum=${sum%% *}
        else sum=$(openssl dgst -sha256 -r "$1" 2>/dev/null) && sum=${sum%% *}; fi
    fi
    [ "$sum" = "$2" ] && _m_ok "$1 sha256 verified" || _m_fail "$1 has sha256 $sum, expected $2"
}

# Run one task's call as another user (become_user), with this library.
_m_as() { # user call
    if [ "$_m_me" = "$1" ]; then eval "$2"; return; fi
    { printf '%s\n' "$_m_lib"; printf '_m_nonce=%s _m_check=%s _m_diff=%s _m_pkg=%s _m_init=%s _m_index=%s\n' \
        "$_m_nonce" "$_m_check" "$_m_diff" "$_m_pkg" "$_m_init" "$_m_index"
      printf '_m_tmp=$(mktemp -d); _m_euid; [ -n "$_m_me" ] || _m_me=$(id -un); _m_status=ok; _m_msg=\n%s\n_m_emit status "$_m_status" "$_m_msg"; _m_cleanup\n' "$2"
    } | sudo -n -u "$1" -- /bin/sh -s >"$_m_tmp/as" 2>&1
    # The inner shell reported its status as a marker; relay everything else.
    _m_status=failed; _m_msg="could not run as $1 (sudo -n -u $1 failed)"
    mark="$(printf '\036M')$_m_nonce status "
    while IFS= read -r l; do
        case $l in
            "$mark"*)
                rest=${l#*status }; _m_status=${rest%% *}; _m_msg=${rest#"$_m_status"}; _m_msg=${_m_msg# } ;;
            *) printf '%s\n' "$l" ;;
        esac
    done <"$_m_tmp/as"
}
