//! The house's shape holds: every module imports only from the layers
//! below it (ARCHITECTURE.md).
//!
//! ```text
//! server            runtime, listeners, connections, admin
//! s3                router and handlers
//! node              what one core owns; the mesh; typed calls
//! config            the resolved configuration (plain data)
//! http              HTTP/1.1 alone (may use auth for payloads)
//! auth              signature checks over a request view
//! storage           the engine
//! limits, error, crash_point, test_support   the ground floor
//! ```
//!
//! Method: read every file under `src/`, drop comments, and collect the
//! top-level modules it names (`crate::x`, or `super::` paths that climb
//! to the crate root). A name of a module in a higher layer fails the test
//! with the file and the line. The binary and the offline checker (`main`,
//! `lib`, `check`) sit on top and may use anything. A new top-level module
//! fails the test until it is given a layer here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of the crate and its layer (higher may use
/// lower).
const LAYERS: &[(&str, u32)] = &[
    ("limits", 10),
    ("error", 10),
    ("crash_point", 10),
    ("test_support", 10),
    ("storage", 20),
    ("auth", 30),
    ("http", 40),
    ("config", 45),
    ("node", 50),
    ("s3", 60),
    ("server", 70),
    ("check", 90),
    ("fuzz_checks", 90),
    ("power_loss", 90),
    ("lib", 100),
    ("main", 100),
];

fn layer_of(module: &str) -> Option<u32> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/storage/shard/uploads.rs` is
/// `["storage", "shard", "uploads"]`; `mod.rs` and the crate root files
/// name their directory (or the root).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && !(parts.is_empty() && (stem == "lib" || stem == "main")) {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code of a line without its `//` comment (and without string
/// literals, which may hold anything).
fn code_of(line: &str) -> String {
    let mut code = String::with_capacity(line.len());
    let mut in_string = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek() == Some(&'/') => break,
            _ => code.push(c),
        }
    }
    code
}

/// The top-level modules `code` names, given the module path of its file.
fn named_modules(code: &str, module: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let boundary = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if boundary && rest.starts_with("crate::") {
            found.push(identifier(&rest["crate::".len()..]));
            at += "crate::".len();
            continue;
        }
        if boundary && rest.starts_with("super::") {
            // Climb one level per `super::`; a path that reaches the crate
            // root names a top-level module next.
            let mut depth = module.len();
            let mut tail = rest;
            while let Some(after) = tail.strip_prefix("super::") {
                depth = depth.saturating_sub(1);
                tail = after;
            }
            // A `mod.rs` (or `foo.rs` with children) is its directory: its
            // `super` is the parent of that directory.
            if depth == 0 {
                found.push(identifier(tail));
            }
            at += rest.len() - tail.len();
            continue;
        }
        at += rest.chars().next().map_or(1, char::len_utf8);
    }
    found.retain(|name| !name.is_empty());
    found
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 40, "found only {} files", files.len());
    let mut violations = Vec::new();
    let mut unassigned = BTreeMap::new();
    for file in &files {
        let module = module_path(&src, file);
        let top = module.first().cloned().unwrap_or_else(|| {
            file.file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        });
        let Some(own) = layer_of(&top) else {
            unassigned.insert(top, file.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (number, line) in text.lines().enumerate() {
            for name in named_modules(&code_of(line), &module) {
                if name == top || name == "s3_error" {
                    continue;
                }
                let Some(theirs) = layer_of(&name) else {
                    // A macro or an item of the crate root (none of them
                    // is a layer).
                    continue;
                };
                if theirs > own {
                    violations.push(format!(
                        "{}:{}: {top} (layer {own}) names {name} (layer {theirs}): {}",
                        file.strip_prefix(&src).expect("under src").display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        unassigned.is_empty(),
        "top-level modules without a layer in tests/layers.rs: {unassigned:?}"
    );
    assert!(
        violations.is_empty(),
        "imports from a layer above:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    // The scanner itself: an upward path in code is found, in a comment or
    // a string it is not, and `super::` paths are resolved.
    let node = vec!["node".to_owned(), "worker".to_owned()];
    assert_eq!(
        named_modules(&code_of("use crate::s3::xml::Owner;"), &node),
        ["s3"]
    );
    assert!(named_modules(&code_of("// see crate::s3::router"), &node).is_empty());
    assert!(named_modules(&code_of(r#"let _ = "crate::server";"#), &node).is_empty());
    assert!(named_modules(&code_of("use super::mesh::Mesh;"), &node).is_empty());
    assert_eq!(
        named_modules(&code_of("use super::super::server::conn;"), &node),
        ["server"]
    );
    let root = vec!["node".to_owned()];
    assert_eq!(
        named_modules(&code_of("super::server::listener::refuse()"), &root),
        ["server"]
    );
    assert!(named_modules(&code_of("my_crate::s3::x"), &node).is_empty());
}
