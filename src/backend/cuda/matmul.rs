//! GEMM through cuBLAS. cuBLAS is column-major, so the row-major `C = op(A)·op(B)` is computed
//! as the column-major `Cᵀ = op(B)ᵀ·op(A)ᵀ`: the operands swap places and keep their transpose
//! flags, and every row-major matrix is read as its column-major transpose.

use cudarc::cublas::sys::{cublasOperation_t, cublasStatus_t};

use super::{backend_error, check_len, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

fn int(op: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::invalid(op, format!("dimension {v} exceeds cuBLAS's int range")))
}

impl MatmulOps for CudaBackend {
    fn gemm(
        &self,
        p: &GemmParams,
        a: &CudaBuffer,
        b: &CudaBuffer,
        c: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "gemm";
        let (m, n, k) = (p.m, p.n, p.k);
        let overflow = || Error::invalid(OP, "matrix size overflows");
        check_len(OP, a, m.checked_mul(k).ok_or_else(overflow)?)?;
        check_len(OP, b, k.checked_mul(n).ok_or_else(overflow)?)?;
        check_len(OP, c, m.checked_mul(n).ok_or_else(overflow)?)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        // Column-major: C'(n × m) = op_b(B') (n × k) · op_a(A') (k × m).
        let trans = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let ldb = int(OP, if p.trans_b { k } else { n }.max(1))?;
        let lda = int(OP, if p.trans_a { m } else { k }.max(1))?;
        let (mi, ni, ki) = (int(OP, m)?, int(OP, n)?, int(OP, k)?);
        let (alpha, beta) = (p.alpha, p.beta);
        let blas = self.blas()?;
        self.bind()?;
        // SAFETY: the handle is alive and bound to this backend's stream; the buffers hold
        // m·k, k·n and m·n elements (checked above), which is what these sizes and leading
        // dimensions address; alpha and beta are host scalars (the handle's default mode).
        let status = unsafe {
            cudarc::cublas::sys::cublasSgemm_v2(
                *blas.handle(),
                trans(p.trans_b),
                trans(p.trans_a),
                ni,
                mi,
                ki,
                &alpha,
                self.ptr(b) as *const f32,
                ldb,
                self.ptr(a) as *const f32,
                lda,
                &beta,
                self.ptr(c) as *mut f32,
                ni,
            )
        };
        if status != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(backend_error(format!("cublasSgemm {p:?}: {status:?}")));
        }
        Ok(())
    }
}
