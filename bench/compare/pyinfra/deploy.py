"""pyinfra equivalent of playbooks/agent-runtime.toml as `maestro install
--profile user` runs it, for the comparison benchmark in bench/compare.

Same files, modes, owners, content, user and service start as maestro; the
templates are maestro's own (playbooks/templates), rendered with a `node`
value shaped like maestro's. Where it has to differ, bench/compare/README.md
says why.
"""

import hashlib
import io
import os
import shlex

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

# playbooks/agent-runtime.toml [vars] overlaid with profiles/user.toml [vars]
runtime_root = "/opt/maestro"
log_dir = "/var/log/maestro"
state_dir = "/var/lib/maestro"
service_user = "maestro"
runtime_version = "1.0.0"
runtime_sha256 = "9e4661d0ac5d8ca28d3b1759e35f4d97517c1b23aa48c5ea430f2411a01b8d09"
heartbeat_seconds = "30"
runtime_command = f"{runtime_root}/bin/maestro-runtime"
pidfile = "/run/maestro/maestro-runtime.pid"
launcher_src = os.path.join(REPO, "playbooks/files/maestro-runtime.sh")

node = {
    "name": host.name,
    "tags": {k: host.data.get(k) for k in ("region", "jurisdiction") if host.data.get(k)},
}
template_vars = dict(
    node=node,
    runtime_root=runtime_root,
    log_dir=log_dir,
    state_dir=state_dir,
    service_user=service_user,
    heartbeat_seconds=heartbeat_seconds,
)


class RuntimeRunning(FactBase):
    """Whether the pidfile names a live process (maestro's `service` check without systemd)."""

    def command(self, pidfile):
        q = shlex.quote(pidfile)
        return f'if [ -s {q} ] && kill -0 "$(head -n 1 {q})" 2>/dev/null; then echo yes; else echo no; fi'

    def process(self, output):
        return bool(output) and output[0].strip() == "yes"


@operation()
def sha256_matches(path, sha256, local_src):
    """maestro's `checksum` module: the file on the node has this sha256.

    Known good without running anything when the node's file already has it
    and the source it is uploaded from has it too (so the upload before this
    changes nothing); otherwise checked on the node after the upload.
    """
    with open(local_src, "rb") as f:
        local = hashlib.sha256(f.read()).hexdigest()
    if local == sha256 and host.get_fact(Sha256File, path=path) == sha256:
        host.noop(f"{path} sha256 verified")
        return
    yield f"echo {shlex.quote(sha256 + '  ' + path)} | sha256sum -c --status -"


server.group(name="service group", group=service_user, system=True)

user = server.user(
    name="service user",
    user=service_user,
    group=service_user,
    system=True,
    home=runtime_root,
    shell="/bin/false",
    create_home=False,
    ensure_home=False,
)

for name, path, mode, owner, group in [
    ("runtime root", runtime_root, "755", "root", "root"),
    ("binaries directory", f"{runtime_root}/bin", "755", "root", "root"),
    ("configuration directory", f"{runtime_root}/etc", "750", "root", service_user),
    ("agent definitions directory", f"{runtime_root}/etc/agents.d", "750", "root", service_user),
    ("agents directory", f"{runtime_root}/agents", "755", service_user, service_user),
    ("run directory", f"{runtime_root}/run", "755", service_user, service_user),
    ("log directory", log_dir, "750", service_user, service_user),
    ("state directory", state_dir, "750", service_user, service_user),
]:
    files.directory(name=name, path=path, mode=mode, user=owner, group=group)

launcher = files.put(
    name="runtime launcher",
    src=launcher_src,
    dest=f"{runtime_root}/bin/maestro-runtime",
    mode="755",
    user="root",
    group="root",
    create_remote_dir=False,
)

config = files.template(
    name="runtime configuration",
    src=os.path.join(REPO, "playbooks/templates/runtime.toml.j2"),
    dest=f"{runtime_root}/etc/runtime.toml",
    mode="640",
    user="root",
    group=service_user,
    create_remote_dir=False,
    **template_vars,
)

files.line(
    name="runtime environment",
    path=f"{runtime_root}/etc/runtime.env",
    line="^MAESTRO_RUNTIME_ROOT=.*",
    replace=f"MAESTRO_RUNTIME_ROOT={runtime_root}",
)
files.line(
    name="log directory in the environment",
    path=f"{runtime_root}/etc/runtime.env",
    line="^MAESTRO_LOG_DIR=.*",
    replace=f"MAESTRO_LOG_DIR={log_dir}",
)

files.put(
    name="manifest",
    src=io.StringIO(f"runtime {runtime_version}\nlauncher sha256 {runtime_sha256}\nnode {host.name}\n"),
    dest=f"{runtime_root}/etc/manifest",
    mode="644",
    create_remote_dir=False,
)

sha256_matches(
    name="launcher matches the manifest",
    path=f"{runtime_root}/bin/maestro-runtime",
    sha256=runtime_sha256,
    local_src=launcher_src,
)

files.put(
    name="log rotation",
    src=io.StringIO(
        f"{log_dir}/*.log {{\n    weekly\n    rotate 8\n    compress\n    missingok\n"
        "    notifempty\n    copytruncate\n}\n"
    ),
    dest="/etc/logrotate.d/maestro-runtime",
    mode="644",
    create_remote_dir=False,
)

files.directory(name="systemd unit directory", path="/etc/systemd/system", mode="755")

unit = files.template(
    name="systemd unit",
    src=os.path.join(REPO, "playbooks/templates/maestro-runtime.service.j2"),
    dest="/etc/systemd/system/maestro-runtime.service",
    mode="644",
    create_remote_dir=False,
    **template_vars,
)

# maestro's `command` with `creates`: run only when the file is not there.
installed_at = f"{state_dir}/installed-at"
if host.get_fact(File, path=installed_at) is None:
    server.shell(
        name="first start recorded",
        commands=[f"date -u +%Y-%m-%dT%H:%M:%SZ > {shlex.quote(installed_at)}"],
    )

# No systemd on the nodes: the same pidfile-managed process maestro's
# `service` module starts (nohup sh -c COMMAND &, its pid in the pidfile).
# maestro's module: its own session, as the service user, PID and start time
# in a root-only pidfile.
START = (
    "mkdir -p -m 0755 /run/maestro\n"
    f"setsid setpriv --reuid {service_user} --regid {service_user} --init-groups -- "
    f"sh -c {shlex.quote(runtime_command)} </dev/null >/dev/null 2>&1 &\n"
    "pid=$!\nread -r st </proc/$pid/stat\nset -- ${st##*) }\nshift 19\n"
    f"printf '%s\\n%s\\n' \"$pid\" \"$1\" >{shlex.quote(pidfile)}"
)
if not host.get_fact(RuntimeRunning, pidfile=pidfile):
    server.shell(name="runtime running", commands=[START])

# The handler: after everything else, only when a notifying task changed.
q = shlex.quote(pidfile)
server.shell(
    name="restart runtime",
    commands=[
        f'if [ -s {q} ] && pid=$(head -n 1 {q}) && kill -0 "$pid" 2>/dev/null; then\n'
        f'    kill -TERM "-$pid" 2>/dev/null\n'
        f'    i=0; while kill -0 "-$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done\n'
        f"    rm -f {q}\n"
        f"fi\n" + START
    ],
    _if=any_changed(launcher, config, unit),
)
