//! Foreground masks from labels and the exact Euclidean distance transform (Felzenszwalb &
//! Huttenlocher, "Distance Transforms of Sampled Functions", 2012): squared distances along the
//! columns, then along the rows, each a lower envelope of parabolas in linear time.

use crate::backend::cpu::elementwise::{for_each_chunk_mut, rows_per_block, PAR_CHUNK};
use crate::backend::cpu::{check_len, CpuBuffer};
use crate::backend::{ForegroundParams, ImageGridParams};
use crate::error::{Error, Result};

pub(super) fn foreground_mask(
    p: &ForegroundParams,
    labels: &CpuBuffer,
    mask: &mut CpuBuffer,
) -> Result<()> {
    const OP: &str = "foreground_mask";
    check_len(OP, labels, p.len)?;
    check_len(OP, mask, p.len)?;
    let labels = labels.as_slice();
    if let Some((row, v)) = labels
        .iter()
        .enumerate()
        .find(|(_, v)| !(**v >= 0.0 && v.fract() == 0.0))
    {
        return Err(Error::invalid(
            OP,
            format!("label {v} of pixel {row} is not a non-negative integer"),
        ));
    }
    let (background, ignore) = (p.background as f32, p.ignore_index.map(|i| i as f32));
    for_each_chunk_mut(mask.as_mut_slice(), PAR_CHUNK, |i, mc| {
        let lc = &labels[i * PAR_CHUNK..i * PAR_CHUNK + mc.len()];
        for (m, &l) in mc.iter_mut().zip(lc) {
            *m = if l != background && Some(l) != ignore {
                1.0
            } else {
                0.0
            };
        }
    });
    Ok(())
}

/// The lower envelope of the parabolas `(q − p)² + f[p]`, reused between lines.
#[derive(Default)]
struct Envelope {
    /// Sites (positions `p` with finite `f[p]`) of the parabolas in the envelope.
    sites: Vec<usize>,
    /// `bounds[k]..bounds[k + 1]` is where parabola `k` is lowest.
    bounds: Vec<f64>,
}

impl Envelope {
    /// `out[q] = min_p (q − p)² + f[p]` over the sites with finite `f[p]`; `f64::INFINITY`
    /// everywhere when there is none.
    fn transform(&mut self, f: &[f64], out: &mut [f64]) {
        let (sites, bounds) = (&mut self.sites, &mut self.bounds);
        sites.clear();
        bounds.clear();
        for (q, &fq) in f.iter().enumerate() {
            if !fq.is_finite() {
                continue;
            }
            let height = fq + (q * q) as f64;
            // Drop the parabolas that the new one hides, then add it where it starts to win.
            let start = loop {
                let Some(&v) = sites.last() else {
                    break f64::NEG_INFINITY;
                };
                let s = (height - (f[v] + (v * v) as f64)) / (2.0 * (q - v) as f64);
                if s <= *bounds.last().expect("one bound per site") {
                    sites.pop();
                    bounds.pop();
                } else {
                    break s;
                }
            };
            sites.push(q);
            bounds.push(start);
        }
        if sites.is_empty() {
            out.fill(f64::INFINITY);
            return;
        }
        let mut k = 0;
        for (q, o) in out.iter_mut().enumerate() {
            while k + 1 < sites.len() && bounds[k + 1] < q as f64 {
                k += 1;
            }
            let d = q as f64 - sites[k] as f64;
            *o = d * d + f[sites[k]];
        }
    }
}

pub(super) fn distance_transform(
    p: &ImageGridParams,
    mask: &CpuBuffer,
    out: &mut CpuBuffer,
) -> Result<()> {
    const OP: &str = "distance_transform";
    let len = p.len(OP)?;
    check_len(OP, mask, len)?;
    check_len(OP, out, len)?;
    if p.is_empty() {
        return Ok(());
    }
    let (h, w) = (p.height, p.width);
    let mask = mask.as_slice();
    // Pass 1, along each column: squared distance to the nearest foreground pixel of the column,
    // stored transposed (`[batch, width, height]`) so each column is contiguous.
    let mut columns = vec![0.0f64; len];
    let block = rows_per_block(h);
    for_each_chunk_mut(&mut columns, block * h, |i, cc| {
        let mut env = Envelope::default();
        let mut f = vec![0.0f64; h];
        for (j, col) in cc.chunks_exact_mut(h).enumerate() {
            let (b, x) = ((i * block + j) / w, (i * block + j) % w);
            for (y, fy) in f.iter_mut().enumerate() {
                let fg = mask[(b * h + y) * w + x] > 0.5;
                *fy = if fg { 0.0 } else { f64::INFINITY };
            }
            env.transform(&f, col);
        }
    });
    // Pass 2, along each row, over the column results: the full squared distance.
    let empty = p.empty_distance();
    let block = rows_per_block(w);
    for_each_chunk_mut(out.as_mut_slice(), block * w, |i, oc| {
        let mut env = Envelope::default();
        let (mut f, mut d2) = (vec![0.0f64; w], vec![0.0f64; w]);
        for (j, row) in oc.chunks_exact_mut(w).enumerate() {
            let (b, y) = ((i * block + j) / h, (i * block + j) % h);
            for (x, fx) in f.iter_mut().enumerate() {
                *fx = columns[(b * w + x) * h + y];
            }
            env.transform(&f, &mut d2);
            for (o, &d) in row.iter_mut().zip(&d2) {
                // No finite site in a row means no foreground in the whole image.
                *o = if d.is_finite() {
                    d.sqrt() as f32
                } else {
                    empty
                };
            }
        }
    });
    Ok(())
}
