//! Every WGSL shader in `shaders/` parses and validates with naga, without a GPU, compiled as the
//! backend compiles it (after the prelude `window.wgsl`), and stays within the workgroup limits
//! WebGPU guarantees on every device.

#![cfg(feature = "wgpu")]

use std::path::PathBuf;

/// The file every other shader is compiled after.
const PRELUDE: &str = "window.wgsl";

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

/// Each shader's source as the backend compiles it, by file name.
fn sources() -> Vec<(String, String)> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let files = shader_files();
    let prelude = files
        .iter()
        .find(|p| p.ends_with(PRELUDE))
        .map(read)
        .unwrap_or_else(|| panic!("shaders/{PRELUDE} is missing"));
    files
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let source = if path.ends_with(PRELUDE) {
                prelude.clone()
            } else {
                format!("{prelude}{}", read(path))
            };
            (name, source)
        })
        .collect()
}

/// Parses and validates `source`, or says why not.
fn validate(name: &str, source: &str) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}: parse error:\n{}", e.emit_to_string(source)))?;
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    );
    validator
        .validate(&module)
        .map_err(|e| format!("{name}: validation error:\n{}", e.emit_to_string(source)))?;
    Ok(module)
}

#[test]
fn every_shader_parses_and_validates() {
    let sources = sources();
    assert!(sources.len() > 1, "no shaders found in shaders/");
    let failures: Vec<String> = sources
        .iter()
        .filter_map(|(name, source)| validate(name, source).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Workgroup memory and sizes are fixed per shader (tiles, reduction trees): no split of the
/// work can shrink them, so they stay within WebGPU's default limits, which every device wgpu
/// opens with `Limits::default()` offers. The workgroup memory counted is every workgroup
/// variable of a file, an upper bound for each of its entry points.
#[test]
fn shaders_fit_webgpu_workgroup_limits() {
    let limits = wgpu::Limits::default();
    let mut failures = Vec::new();
    let mut largest = 0;
    for (name, source) in sources() {
        let module = validate(&name, &source).unwrap_or_else(|e| panic!("{e}"));
        let storage: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
            .sum();
        largest = largest.max(storage);
        if storage > limits.max_compute_workgroup_storage_size {
            failures.push(format!(
                "{name}: {storage} bytes of workgroup memory, more than {}",
                limits.max_compute_workgroup_storage_size
            ));
        }
        for entry in &module.entry_points {
            let [x, y, z] = entry.workgroup_size;
            let fits = x <= limits.max_compute_workgroup_size_x
                && y <= limits.max_compute_workgroup_size_y
                && z <= limits.max_compute_workgroup_size_z
                && x * y * z <= limits.max_compute_invocations_per_workgroup;
            if !fits {
                failures.push(format!(
                    "{name}: entry point {} has workgroups of {x}×{y}×{z}",
                    entry.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The GEMM's tiles, at least: a count of 0 would mean the sizes are not read.
    assert!(largest >= 4096, "largest workgroup memory {largest} bytes");
}
