"""Write the Ansible (INI) and pyinfra (Python) inventories for a test fleet
started by tests/fleet/fleet.sh, from its nodes.toml: every node as root with
the fleet's key, host keys checked against the fleet's known_hosts only.

    python3 inventory.py FLEET_DIR OUT_DIR   # writes OUT_DIR/hosts.ini, OUT_DIR/inventory.py
"""

import os
import sys
import tomllib


def main():
    fleet, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(fleet, "nodes.toml"), "rb") as f:
        nodes = tomllib.load(f)["node"]
    key = os.path.join(fleet, "id_ed25519")
    known = os.path.join(fleet, "known_hosts")
    os.makedirs(out, exist_ok=True)

    ini = ["[fleet]"]
    for name, n in nodes.items():
        tags = n.get("tags", {})
        ini.append(
            f"{name} ansible_host={n['address']} ansible_port={n['port']}"
            f" region={tags.get('region', 'unknown')} jurisdiction={tags.get('jurisdiction', 'unknown')}"
        )
    ini += [
        "",
        "[fleet:vars]",
        "ansible_user=root",
        # The nodes see the host's /root through their overlay, pyenv shims
        # included, and interpreter discovery would pick a shim that fails there.
        "ansible_python_interpreter=/usr/bin/python3",
        f"ansible_ssh_private_key_file={key}",
        # Host keys: the fleet's known_hosts and nothing else, unknown hosts refused.
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null"
        " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'",
        "",
    ]
    with open(os.path.join(out, "hosts.ini"), "w") as f:
        f.write("\n".join(ini))

    hosts = []
    for name, n in nodes.items():
        tags = n.get("tags", {})
        data = {
            "ssh_hostname": n["address"],
            "ssh_port": n["port"],
            "ssh_user": "root",
            "ssh_key": key,
            "ssh_known_hosts_file": known,
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            "region": tags.get("region", "unknown"),
            "jurisdiction": tags.get("jurisdiction", "unknown"),
        }
        hosts.append(f"    ({name!r}, {data!r}),")
    with open(os.path.join(out, "inventory.py"), "w") as f:
        f.write("fleet = [\n" + "\n".join(hosts) + "\n]\n")


if __name__ == "__main__":
    main()
