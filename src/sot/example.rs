//! The example SoT shipped inside the binary, for `maestro init`.

use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/embedded_example.rs"));

/// The files of a fresh SoT: the example's `sot/` at the top, the libraries in
/// `profiles/`, `playbooks/` and `hardening/` beside it, and `maestro.toml`
/// pointing at them.
pub fn scaffold(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    EMBEDDED
        .iter()
        .map(|(path, content)| {
            let path = path.strip_prefix("sot/").unwrap_or(path);
            let content = if path == super::SETTINGS_FILE {
                local_settings(&String::from_utf8_lossy(content), name).into_bytes()
            } else {
                content.to_vec()
            };
            (PathBuf::from(path), content)
        })
        .collect()
}

/// The example's maestro.toml with the library paths made local and a new name.
fn local_settings(text: &str, name: &str) -> String {
    let mut doc: toml_edit::DocumentMut = text.parse().expect("the embedded maestro.toml is valid");
    doc["maestro"]["name"] = toml_edit::value(name);
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_table_mut()) {
        for key in ["profiles", "playbooks", "hardening"] {
            if paths.contains_key(key) {
                paths[key] = toml_edit::value(key);
            }
        }
    }
    doc.to_string()
}
