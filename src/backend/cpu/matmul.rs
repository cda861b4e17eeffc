//! Dense f32 matrix products on the `gemm` crate (AVX-512 kernels where the CPU has them).
//!
//! [`sgemm`] is the one safe entry point into `gemm::gemm`; convolution reuses it with strided
//! views (a transposed operand is just swapped strides, never a copy).

use gemm::Parallelism;

use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;

/// A read-only strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix with row stride `cols`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transposed view (strides swapped, no copy).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// A mutable strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Debug)]
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix with row stride `cols`.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
}

/// Whether every element of a `rows × cols` view with strides `rs`, `cs` lies inside `len`.
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .zip((cols - 1).checked_mul(cs))
        .and_then(|(a, b)| a.checked_add(b));
    matches!(last, Some(last) if last < len)
}

/// `c = alpha · a · b + beta · c` (BLAS convention; `c` is not read when `beta == 0`).
///
/// `a` is `m × k`, `b` is `k × n`, `c` is `m × n`, each with arbitrary strides. `c` must not
/// alias itself (distinct `(i, j)` map to distinct elements), which holds for every caller here
/// since each passes a plain row-major or column-major destination.
///
/// # Panics
/// If the shapes do not agree or a view reaches past its slice: callers have already checked
/// buffer lengths, so this guards soundness of the unsafe call, not user input.
pub(crate) fn sgemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    parallelism: Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && c.rows == m && c.cols == n,
        "sgemm: shape mismatch"
    );
    assert!(fits(a.data.len(), m, k, a.rs, a.cs), "sgemm: lhs view");
    assert!(fits(b.data.len(), k, n, b.rs, b.cs), "sgemm: rhs view");
    assert!(fits(c.data.len(), m, n, c.rs, c.cs), "sgemm: dst view");
    assert!(
        m <= 1 || n <= 1 || (c.rs != c.cs && c.rs != 0 && c.cs != 0),
        "sgemm: aliasing dst"
    );
    // SAFETY: every element touched lies inside its slice (checked above), `c` is borrowed
    // mutably and cannot overlap the shared `a` / `b`. `gemm` computes
    // `dst = alpha·dst + beta·lhs·rhs`, the reverse of BLAS, hence the swapped scalars.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            c.cs as isize,
            c.rs as isize,
            beta != 0.0,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

impl MatmulOps for CpuBackend {
    fn gemm(&self, p: &GemmParams, a: &CpuBuffer, b: &CpuBuffer, c: &mut CpuBuffer) -> Result<()> {
        const OP: &str = "gemm";
        let (m, n, k) = (p.m, p.n, p.k);
        check_len(OP, a, m * k)?;
        check_len(OP, b, k * n)?;
        check_len(OP, c, m * n)?;
        // A stored k × m (trans_a) or m × k; B stored n × k (trans_b) or k × n.
        let a = if p.trans_a {
            MatRef::row_major(&a.0, k, m).t()
        } else {
            MatRef::row_major(&a.0, m, k)
        };
        let b = if p.trans_b {
            MatRef::row_major(&b.0, n, k).t()
        } else {
            MatRef::row_major(&b.0, k, n)
        };
        let c = MatMut::row_major(&mut c.0, m, n);
        // `gemm` falls back to one thread by itself for small products.
        sgemm(p.alpha, a, b, p.beta, c, Parallelism::Rayon(0));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Memory;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn gemm_all_transposes_with_beta() {
        let cpu = CpuBackend::new();
        let (m, n, k) = (7, 5, 9);
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let c0 = values(m * n, 3);
            let p = GemmParams {
                m,
                n,
                k,
                trans_a,
                trans_b,
                alpha: 0.75,
                beta: -0.5,
            };
            let mut c = CpuBuffer(c0.clone());
            cpu.gemm(&p, &CpuBuffer(a.clone()), &CpuBuffer(b.clone()), &mut c)
                .unwrap();
            let got = cpu.download(&c).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0f64;
                    for l in 0..k {
                        let av = if trans_a { a[l * m + i] } else { a[i * k + l] };
                        let bv = if trans_b { b[j * k + l] } else { b[l * n + j] };
                        s += av as f64 * bv as f64;
                    }
                    let want = 0.75 * s + -0.5 * c0[i * n + j] as f64;
                    let g = got[i * n + j] as f64;
                    // Tolerance: rel 1e-5, abs 1e-6 (f32 products of 9 terms in [-1, 1]).
                    assert!(
                        (g - want).abs() <= 1e-6 + 1e-5 * want.abs(),
                        "trans ({trans_a}, {trans_b}) at ({i}, {j}): {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn gemm_rejects_bad_lengths() {
        let cpu = CpuBackend::new();
        let p = GemmParams {
            m: 2,
            n: 2,
            k: 2,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
        };
        let mut c = CpuBuffer(vec![0.0; 4]);
        let err = cpu.gemm(
            &p,
            &CpuBuffer(vec![0.0; 3]),
            &CpuBuffer(vec![0.0; 4]),
            &mut c,
        );
        assert!(err.is_err());
    }
}
