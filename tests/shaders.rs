//! Every WGSL shader in `shaders/` parses and validates with naga, without a GPU.

#![cfg(feature = "wgpu")]

use std::path::PathBuf;

fn shader_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shader_parses_and_validates() {
    let files = shader_files();
    assert!(!files.is_empty(), "no shaders found in shaders/");
    let mut failures = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let module = match naga::front::wgsl::parse_str(&source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!(
                    "{name}: parse error:\n{}",
                    e.emit_to_string(&source)
                ));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!(
                "{name}: validation error:\n{}",
                e.emit_to_string(&source)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
