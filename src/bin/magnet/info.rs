//! `magnet info`: version, features and the devices each backend finds.

pub fn run() -> magnet::Result<()> {
    println!("magnet {}", env!("CARGO_PKG_VERSION"));
    println!("cpu:  available, {} threads", rayon::current_num_threads());
    #[cfg(feature = "cuda")]
    match magnet::backend::cuda::probe() {
        Ok(devices) => println!("cuda: available: {}", devices.join(", ")),
        Err(e) => println!("cuda: unavailable: {e}"),
    }
    #[cfg(not(feature = "cuda"))]
    println!("cuda: not built (enable the `cuda` feature)");
    #[cfg(feature = "wgpu")]
    match magnet::backend::wgpu::probe() {
        Ok(adapter) => println!("wgpu: available: {adapter}"),
        Err(e) => println!("wgpu: unavailable: {e}"),
    }
    #[cfg(not(feature = "wgpu"))]
    println!("wgpu: not built (enable the `wgpu` feature)");
    println!(
        "hdf5: {}",
        if cfg!(feature = "hdf5") {
            "built"
        } else {
            "not built"
        }
    );
    Ok(())
}
