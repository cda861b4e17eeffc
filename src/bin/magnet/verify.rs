//! `magnet verify`: every backend primitive on every backend of this machine against the CPU.

use magnet::verify::{format_table, verify_backend, CaseResult};
use magnet::{Error, Result};

pub fn run() -> Result<()> {
    let mut results: Vec<CaseResult> = Vec::new();
    #[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(unused_mut))]
    let mut checked = String::from("cpu");
    results.extend(verify_backend(&magnet::CpuBackend::new())?);
    #[cfg(feature = "cuda")]
    match magnet::backend::CudaBackend::new(0) {
        Ok(b) => {
            // The tolerances are those of sums of products; transforms (Winograd, FFT) round
            // differently, by design.
            b.set_direct_convolutions(true);
            checked.push_str(", cuda");
            results.extend(verify_backend(&b)?);
        }
        Err(e) => println!("cuda: skipped ({e})"),
    }
    #[cfg(not(feature = "cuda"))]
    println!("cuda: not built (enable the `cuda` feature)");
    #[cfg(feature = "wgpu")]
    match magnet::backend::WgpuBackend::new() {
        Ok(b) => {
            checked.push_str(", wgpu");
            results.extend(verify_backend(&b)?);
        }
        Err(e) => println!("wgpu: skipped ({e})"),
    }
    #[cfg(not(feature = "wgpu"))]
    println!("wgpu: not built (enable the `wgpu` feature)");

    println!("reference: the CPU backend on one thread; backends: {checked}");
    print!("{}", format_table(&results));
    let failed = results.iter().filter(|r| !r.passed()).count();
    println!("{} cases, {failed} failed", results.len());
    if failed > 0 {
        return Err(Error::invalid(
            "verify",
            format!(
                "{failed} of {} cases outside their tolerance",
                results.len()
            ),
        ));
    }
    Ok(())
}
