//! The CUDA C kernels of `kernels/*.cu`, embedded in the library, compiled with NVRTC for the
//! device's architecture at first use and cached: the PTX once per process and architecture,
//! the loaded module and its functions once per backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

use super::{backend_error, driver_error};
use crate::error::Result;

/// Prepended to every kernel file.
const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// One kernel source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Module {
    Elementwise,
    Reduce,
    Layout,
    Resample,
    Pool,
    Optim,
    Loss,
    Distance,
    Norm,
}

impl Module {
    fn file(self) -> &'static str {
        match self {
            Module::Elementwise => "elementwise.cu",
            Module::Reduce => "reduce.cu",
            Module::Layout => "layout.cu",
            Module::Resample => "resample.cu",
            Module::Pool => "pool.cu",
            Module::Optim => "optim.cu",
            Module::Loss => "loss.cu",
            Module::Distance => "distance.cu",
            Module::Norm => "norm.cu",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Module::Elementwise => include_str!("../../../kernels/elementwise.cu"),
            Module::Reduce => include_str!("../../../kernels/reduce.cu"),
            Module::Layout => include_str!("../../../kernels/layout.cu"),
            Module::Resample => include_str!("../../../kernels/resample.cu"),
            Module::Pool => include_str!("../../../kernels/pool.cu"),
            Module::Optim => include_str!("../../../kernels/optim.cu"),
            Module::Loss => include_str!("../../../kernels/loss.cu"),
            Module::Distance => include_str!("../../../kernels/distance.cu"),
            Module::Norm => include_str!("../../../kernels/norm.cu"),
        }
    }
}

/// PTX compiled in this process, by file and virtual architecture (`compute_90`).
fn ptx_cache() -> &'static Mutex<HashMap<(Module, String), Ptx>> {
    static CACHE: OnceLock<Mutex<HashMap<(Module, String), Ptx>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Compiles `module` for `arch`. Kernels are compiled without FMA contraction, so their
/// arithmetic rounds as the CPU reference's does, term by term.
fn compile(module: Module, arch: &str) -> Result<Ptx> {
    let key = (module, arch.to_string());
    let mut cache = ptx_cache()
        .lock()
        .map_err(|_| backend_error("the PTX cache's lock is poisoned"))?;
    if let Some(ptx) = cache.get(&key) {
        return Ok(ptx.clone());
    }
    let source = format!(
        "{COMMON}\n#line 1 \"{}\"\n{}",
        module.file(),
        module.source()
    );
    let opts = CompileOptions {
        fmad: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some(module.file().to_string()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(source, opts).map_err(|e| {
        let detail = match &e {
            CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => format!("{other:?}"),
        };
        backend_error(format!(
            "NVRTC could not compile kernels/{} for {arch}: {detail}",
            module.file()
        ))
    })?;
    cache.insert(key, ptx.clone());
    Ok(ptx)
}

/// The modules and functions loaded into one context.
pub(crate) struct Kernels {
    arch: String,
    modules: Mutex<HashMap<Module, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(Module, &'static str), CudaFunction>>,
}

impl Kernels {
    /// For a device of compute capability `major.minor`.
    pub(crate) fn new(major: i32, minor: i32) -> Self {
        Kernels {
            arch: format!("compute_{major}{minor}"),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        }
    }

    /// Kernel `name` of `module`.
    pub(crate) fn function(
        &self,
        ctx: &Arc<CudaContext>,
        module: Module,
        name: &'static str,
    ) -> Result<CudaFunction> {
        let poisoned = || backend_error("the kernel cache's lock is poisoned");
        if let Some(f) = self
            .functions
            .lock()
            .map_err(|_| poisoned())?
            .get(&(module, name))
        {
            return Ok(f.clone());
        }
        let loaded = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            match modules.get(&module) {
                Some(m) => m.clone(),
                None => {
                    let ptx = compile(module, &self.arch)?;
                    let m = ctx.load_module(ptx).map_err(|e| {
                        driver_error(&format!("loading kernels/{}", module.file()), e)
                    })?;
                    modules.insert(module, m.clone());
                    m
                }
            }
        };
        let f = loaded
            .load_function(name)
            .map_err(|e| driver_error(&format!("kernel {name} of {}", module.file()), e))?;
        self.functions
            .lock()
            .map_err(|_| poisoned())?
            .insert((module, name), f.clone());
        Ok(f)
    }
}
