# maestro telemetry sampler: POSIX sh, one per node, on one long-lived SSH
# exec channel. The controller prepends `interval_ms=N root=DIR` and paces it:
# the first line on stdin is a per-connection nonce, then every line asks for
# one sample. End of stdin (the channel closed, the connection dropped, the
# controller died) ends the loop, and the exit trap ends what the sampler
# started (nvidia-smi), so nothing is left behind on the node.
#
# Output, one record per line (the controller's parser is in parse.rs):
#   H 1 CLK_TCK PAGESIZE FETCHER      once, at the start
#   S SEQ UPTIME                      sample start (/proc/uptime, seconds)
#   C user nice system idle iowait irq softirq steal   (/proc/stat jiffies)
#   L LOAD1 LOAD5 LOAD15
#   M MEMTOTAL_KB MEMAVAILABLE_KB
#   F TOTAL_KB USED_KB                root filesystem, every 30th sample (df)
#   N IFACE RX_BYTES TX_BYTES         one per interface but lo
#   G CSV                             one per GPU (nvidia-smi's last loop)
#   A NAME ENABLED VERSION DIGEST PID STATE UTIME STIME RSS_PAGES
#                                     (the preview slot's instance: NAME@preview,
#                                     from state.preview)
#   B NAME                            then the agent's /metrics body, raw,
#   NONCE RC                          ended by this line (nothing in a body can
#                                     forge it: the nonce came on stdin)
#   E SEQ                             sample end
#
# Cost per sample: builtins only (read, case, printf, parameter expansion),
# except one fetch per agent with a metrics endpoint (curl, else wget, else
# python3) and `df` every 30th sample: sh has no statfs.

nl='
'
set -f
read -r nonce || exit 0
case $nonce in '' | *[!0-9a-f]*) exit 1 ;; esac

tck=$(getconf CLK_TCK 2>/dev/null)
pg=$(getconf PAGESIZE 2>/dev/null)
case $tck in '' | *[!0-9]*) tck=100 ;; esac
case $pg in '' | *[!0-9]*) pg=4096 ;; esac

if command -v curl >/dev/null 2>&1; then fetcher=curl
elif command -v wget >/dev/null 2>&1; then fetcher=wget
elif command -v python3 >/dev/null 2>&1; then fetcher=python3
else fetcher=none
fi

# At most 1 MiB + 1 byte of a body: the controller refuses more than 1 MiB.
fetch() {
    case $fetcher in
        curl) curl -fs -m 1 "$1" 2>/dev/null | head -c 1048577 ;;
        wget) wget -q -T 1 -O - "$1" 2>/dev/null | head -c 1048577 ;;
        python3) python3 -c 'import sys,urllib.request as u
sys.stdout.buffer.write(u.urlopen(sys.argv[1],timeout=1).read(1048577))' "$1" 2>/dev/null ;;
        *) return 1 ;;
    esac
}

gpudir= gpuold= gpuprev=
finish() {
    trap - EXIT
    trap '' TERM HUP PIPE
    if [ -n "$gpudir" ]; then
        read -r smi <"$gpudir/pid" 2>/dev/null && kill -TERM "$smi" 2>/dev/null
        kill -TERM "$gpureader" 2>/dev/null
        rm -rf -- "$gpudir"
    fi
    exit 0
}
trap finish EXIT HUP PIPE TERM INT

# One long-lived nvidia-smi per node. Its reader keeps the latest line of each
# GPU, numbered, in a file of its own; a sample reports a line at most twice,
# so a hung nvidia-smi shows as missing GPU samples, never as old values. Should the
# sampler die without its exit trap (SIGKILL), the reader notices at the next
# line and quits, and nvidia-smi dies writing to the closed pipe.
if command -v nvidia-smi >/dev/null 2>&1 && gpudir=$(mktemp -d 2>/dev/null); then
    sampler=$$
    {
        nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw \
            --format=csv,noheader,nounits --loop-ms="$interval_ms" </dev/null 2>/dev/null &
        printf '%s\n' "$!" >"$gpudir/pid"
        wait
    } | while IFS= read -r line; do
        kill -0 "$sampler" 2>/dev/null || break
        i=${line%%,*}
        case $i in '' | *[!0-9]*) continue ;; esac
        k=$((k + 1))
        printf '%s %s\n' "$k" "$line" >"$gpudir/gpu.$i"
    done &
    gpureader=$!
fi

printf 'H 1 %s %s %s\n' "$tck" "$pg" "$fetcher"

seq=0
while IFS= read -r tick; do
    seq=$((seq + 1))
    out="S $seq"
    if read -r up _ </proc/uptime; then out="$out $up"; fi
    out="$out$nl"
    if read -r _ u n s i w q sq st _ </proc/stat; then
        out="${out}C $u $n $s $i $w $q $sq $st$nl"
    fi
    if read -r l1 l5 l15 _ </proc/loadavg; then out="${out}L $l1 $l5 $l15$nl"; fi
    mt= ma=
    while read -r k v _; do
        case $k in
            MemTotal:) mt=$v ;;
            MemAvailable:) ma=$v; break ;;
        esac
    done </proc/meminfo
    [ -n "$mt" ] && out="${out}M $mt ${ma:--}$nl"
    if [ $((seq % 30)) = 1 ]; then
        set -- $(df -Pk / 2>/dev/null)
        # "Filesystem 1024-blocks Used Available Capacity Mounted on" first
        [ $# -ge 12 ] && out="${out}F $9 ${10}$nl"
    fi
    while IFS=: read -r ifc rest; do
        [ -n "$rest" ] || continue
        set -- $ifc
        ifc=$1
        set -- $rest
        [ "$ifc" = lo ] || [ $# -lt 9 ] || out="${out}N $ifc $1 $9$nl"
    done </proc/net/dev
    if [ -n "$gpudir" ]; then
        seen=
        set +f
        for f in "$gpudir"/gpu.*; do
            [ -f "$f" ] && read -r k line <"$f" || continue
            seen="$seen|$k"
            case "$gpuold|" in *"|$k|"*) continue ;; esac
            out="${out}G $line$nl"
        done
        set -f
        gpuold=$gpuprev gpuprev=$seen
    fi
    printf '%s' "$out"

    set +f
    for d in "$root"/var/lib/maestro/agents/*/; do
        set -f
        for sf in "${d}state" "${d}state.preview"; do
            [ -f "$sf" ] && [ ! -L "$sf" ] || continue
            name= version= digest= host= port= metrics= pidfile= enabled=
            while IFS='=' read -r k v; do
                case $k in
                    agent) name=$v ;;
                    version) version=$v ;;
                    digest) digest=$v ;;
                    host) host=$v ;;
                    port) port=$v ;;
                    metrics) metrics=$v ;;
                    pidfile) pidfile=$v ;;
                    enabled) enabled=$v ;;
                esac
            done <"$sf"
            # Values reach a URL and the output: only what the contract allows.
            case $name in '' | *[!a-z0-9_-]*) continue ;; esac
            # The preview slot (blue/green, canary by gateway) is its own instance.
            [ "$sf" = "${d}state" ] || name=$name@preview
            case $version in '' | *[!A-Za-z0-9._+-]*) version=- ;; esac
            case $digest in '' | *[!0-9a-f]*) digest=- ;; esac
            case $enabled in 0 | 1) ;; *) enabled=- ;; esac
            pid=- state=- ut=0 stt=0 rss=0
            case $pidfile in /*)
                pid= start=
                { read -r pid; read -r start; } <"$root$pidfile" 2>/dev/null
                case $pid:$start in
                    *[!0-9:]* | :* | *:) pid=- ;;
                    *)
                        if read -r stat <"/proc/$pid/stat" 2>/dev/null; then
                            set -- ${stat##*) }
                            # $1 state, $12 utime, $13 stime, $20 start time, $22 rss pages
                            if [ $# -ge 22 ] && [ "${20}" = "$start" ]; then
                                state=$1 ut=${12} stt=${13} rss=${22}
                            else
                                state=gone
                            fi
                        else
                            state=gone
                        fi ;;
                esac ;;
            esac
            printf 'A %s %s %s %s %s %s %s %s %s\n' "$name" "$enabled" "$version" "$digest" \
                "$pid" "$state" "$ut" "$stt" "$rss"
            case $state in gone | - | Z) continue ;; esac
            case $port in '' | *[!0-9]*) continue ;; esac
            case $metrics in /*) ;; *) continue ;; esac
            case $metrics in *[!A-Za-z0-9/._~-]*) continue ;; esac
            case $host in *[!A-Za-z0-9.:-]* | '') continue ;; *:*) host="[$host]" ;; esac
            printf 'B %s\n' "$name"
            fetch "http://$host:$port$metrics"
            printf '\n%s %s\n' "$nonce" "$?"
        done
    done
    set -f
    printf 'E %s\n' "$seq"
done
