//! Keeps the layering `lib.rs` states true: reads every file under `src/` and fails on a
//! `crate::` path from a module to one of the same or a higher layer (an edge pointing up,
//! the start of an import cycle). Comments are not read, nor a file's unit tests (from its
//! `#[cfg(test)]` on), which may check that two layers agree.

use std::collections::BTreeSet;
use std::path::Path;

/// The top-level modules, bottom first. A module may use those of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["domain", "clock", "telemetry"],
    &["store"],
    &["error"],
    &["metrics"],
    &["providers"],
    &["service"],
    &["dispatch"],
    &["config"],
    &["grpc", "rest", "receipts", "events"],
    &["server"],
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a source file names through `crate::`, comments left out.
fn uses(source: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b};`
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        used.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        }
    }
    used
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_one_of_its_own_or_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut upward = Vec::new();
    for path in &all {
        let relative = path.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if ["lib", "main", "layering"].contains(&top) {
            continue;
        }
        let from = layer(top).unwrap_or_else(|| panic!("src/{top} is in no layer of LAYERS: place it"));
        let source = std::fs::read_to_string(path).unwrap();
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for used in uses(code) {
            if used == top {
                continue;
            }
            let Some(to) = layer(&used) else { continue }; // a crate-root item, not a module
            if to >= from {
                upward.push(format!("src/{} uses crate::{used}", relative.display()));
            }
        }
    }
    assert!(upward.is_empty(), "edges that point up (see the layering in lib.rs):\n{}", upward.join("\n"));
}

#[test]
fn the_reader_sees_grouped_paths_and_skips_comments() {
    let used = uses("use crate::{store::X, error};\n// crate::cli is only a comment\nlet v = crate::server::VERSION;");
    assert_eq!(used, ["error", "server", "store"].map(String::from).into());
}
