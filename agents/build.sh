#!/bin/sh
# Build the example agents' artifacts reproducibly: the same bytes (and so the
# same sha256 as sot/agents.toml records) on every machine with GNU tar and gzip.
#   agents/build.sh [OUTDIR]    (default: sot/artifacts)
# Each artifact is a .tar.gz of agent.py, VERSION and run; `run` is the
# command the registry names. Files are sorted, owned by 0:0, dated at the
# epoch, and gzip leaves out the name and time (-n).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../sot/artifacts}
mkdir -p "$out"
# name version: one artifact each
set -- \
    fleet-doctor 2.0.3 \
    fleet-doctor 2.1.0 \
    support-triage 1.3.2 \
    support-triage 1.4.0 \
    invoice-extractor 0.9.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
while [ $# -ge 2 ]; do
    name=$1 version=$2; shift 2
    dir=$work/$name-$version
    mkdir -p "$dir"
    cp "$here/example/agent.py" "$dir/agent.py"
    printf '%s\n' "$version" >"$dir/VERSION"
    printf '#!/bin/sh\nexec python3 "$(dirname "$0")/agent.py"\n' >"$dir/run"
    chmod 0644 "$dir/agent.py" "$dir/VERSION"
    chmod 0755 "$dir/run"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=ustar \
        -C "$dir" -cf - agent.py VERSION run | gzip -n -9 >"$out/$name-$version.tar.gz"
    printf '%s  %s\n' "$(sha256sum <"$out/$name-$version.tar.gz" | cut -d' ' -f1)" "$name-$version.tar.gz"
done
