//! Embeds the example SoT and the profile, playbook and hardening libraries so an
//! installed `maestro init` can scaffold a SoT without the source tree.

use std::fmt::Write as _;
use std::path::Path;

fn collect(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let rel_name = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if path.is_dir() {
            collect(&path, &rel_name, out);
        } else {
            out.push((rel_name, path.display().to_string()));
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut code = String::from(
        "/// (path inside the example, absolute source path) for every embedded file.\npub const EMBEDDED: &[(&str, &[u8])] = &[\n",
    );
    for top in ["sot", "profiles", "playbooks", "hardening"] {
        println!("cargo:rerun-if-changed={top}");
        let mut files = Vec::new();
        collect(&root.join(top), top, &mut files);
        for (rel, abs) in files {
            writeln!(code, "    ({rel:?}, include_bytes!({abs:?})),").unwrap();
        }
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded_example.rs");
    std::fs::write(out, code).unwrap();
}
