//! How each convolution shape runs, from its plans ([`crate::backend::tuning`]): every
//! candidate the plans timed, in NHWC and (strict fp32) on NCHW copies, with its scratch memory.

use cudarc::cudnn::sys;

use super::{
    batch_chunks, bwd_data_algo, bwd_filter_algo, fwd_algo, images_per_copy, Candidate, ConvKey,
    ConvMath, ConvPlan, ConvUse, Dnn,
};
use crate::backend::{Conv2dParams, ConvKind, ConvLayout, ConvTuning, ConvWay};

impl Dnn {
    /// How each convolution called since the last report runs, with the ways its plans timed
    /// (largest images first); starts counting calls afresh.
    pub(crate) fn take_tunings(&mut self) -> Vec<ConvTuning> {
        let uses = std::mem::take(&mut self.uses);
        let mut tunings: Vec<ConvTuning> = uses
            .into_iter()
            .map(|(key, used)| self.tuning(key, used))
            .collect();
        tunings.sort_by_key(|t| {
            let p = &t.params;
            (
                t.tf32,
                p.batch,
                std::cmp::Reverse(p.in_h * p.in_w),
                p.in_channels,
                p.out_channels,
                t.kind,
            )
        });
        tunings
    }

    pub(super) fn tuning(&self, key: ConvKey, used: ConvUse) -> ConvTuning {
        let (kind, p, math) = key;
        let planned = |nchw: bool, batch: usize| {
            let p = Conv2dParams { batch, ..p };
            self.plans.get(&(kind, p, ConvMath { nchw, ..math }))
        };
        let mut ways = Vec::new();
        if let Some(plan) = planned(false, p.batch) {
            ways.extend(plan.candidates.iter().enumerate().map(|(i, c)| ConvWay {
                layout: ConvLayout::Nhwc,
                algorithm: algorithm_name(kind, c),
                images_per_run: p.batch,
                workspace_bytes: c.workspace as u64,
                copy_bytes: 0,
                ms: c.ms.map(f64::from),
                in_use: !used.nchw && i == plan.current,
            }));
        }
        // The runs an NCHW call makes: as it ran, or as its layout was timed.
        let images = if used.nchw {
            Some(used.images)
        } else {
            images_per_copy(&p, math.scratch)
        };
        let runs: Option<Vec<&ConvPlan>> = images.and_then(|images| {
            batch_chunks(p.batch, images)
                .iter()
                .map(|&(_, n)| planned(true, n))
                .collect()
        });
        if let Some((longest, runs)) = runs.as_ref().and_then(|r| Some((r.first()?, r))) {
            let in_use: Vec<(&[Candidate], usize)> = runs
                .iter()
                .map(|r| (r.candidates.as_slice(), r.current))
                .collect();
            let transposes = self
                .layout_ms
                .get(&key)
                .and_then(|&[_, call_ms]| transposes_ms(call_ms, &in_use));
            let plans: Vec<&[Candidate]> = in_use.iter().map(|r| r.0).collect();
            let images_per_run = images.unwrap_or(p.batch).min(p.batch);
            let run = Conv2dParams {
                batch: images_per_run,
                ..p
            };
            let copies: usize = kind.roles().iter().map(|r| r.len(&run)).sum();
            ways.extend(longest.candidates.iter().enumerate().map(|(i, c)| ConvWay {
                layout: ConvLayout::Nchw,
                algorithm: algorithm_name(kind, c),
                images_per_run,
                workspace_bytes: c.workspace as u64,
                copy_bytes: (copies * std::mem::size_of::<f32>()) as u64,
                ms: staged_ms(&plans, c, transposes).map(f64::from),
                in_use: used.nchw && i == longest.current,
            }));
        }
        ConvTuning {
            kind,
            params: p,
            tf32: math.tf32,
            scratch_limit: math.scratch.map(|b| b as u64),
            calls: used.calls,
            ways,
        }
    }
}

/// Milliseconds of the transposes of an NCHW call timed at `call_ms` whose runs each used the
/// candidate in use of its plan (`(candidates, index in use)`): what the runs' convolutions do
/// not account for. `None` where a run's candidate was not timed.
fn transposes_ms(call_ms: f32, runs: &[(&[Candidate], usize)]) -> Option<f32> {
    let convolutions = runs
        .iter()
        .map(|&(candidates, current)| candidates.get(current)?.ms)
        .sum::<Option<f32>>()?;
    Some((call_ms - convolutions).max(0.0))
}

/// Milliseconds of an NCHW call whose runs (each a plan's candidates) all use `cand`'s
/// algorithm, plus the transposes; `None` where a run did not time it or the transposes are
/// unknown.
fn staged_ms(runs: &[&[Candidate]], cand: &Candidate, transposes: Option<f32>) -> Option<f32> {
    let convolutions = runs
        .iter()
        .map(|plan| {
            plan.iter()
                .find(|c| c.algo == cand.algo && c.math == cand.math)?
                .ms
        })
        .sum::<Option<f32>>()?;
    Some(convolutions + transposes?)
}

/// cuDNN's name of `cand`'s algorithm without its prefix (`IMPLICIT_PRECOMP_GEMM`, `FFT`,
/// `ALGO_1`), marked where it uses tensor cores.
fn algorithm_name(kind: ConvKind, cand: &Candidate) -> String {
    let full = match kind {
        ConvKind::Forward => fwd_algo(cand.algo).map(|a| format!("{a:?}")),
        ConvKind::BackwardData => bwd_data_algo(cand.algo).map(|a| format!("{a:?}")),
        ConvKind::BackwardFilter => bwd_filter_algo(cand.algo).map(|a| format!("{a:?}")),
    };
    let name = match full.as_deref().and_then(|f| f.split_once("_ALGO_")) {
        Some((_, n)) if n.starts_with(|c: char| c.is_ascii_digit()) => format!("ALGO_{n}"),
        Some((_, n)) => n.to_string(),
        None => format!("algorithm {}", cand.algo),
    };
    let tensor_cores = matches!(
        cand.math,
        sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH
            | sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
    );
    if tensor_cores {
        format!("{name} (tensor cores)")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(algo: u32, ms: Option<f32>) -> Candidate {
        Candidate {
            algo,
            math: sys::cudnnMathType_t::CUDNN_FMA_MATH,
            workspace: 0,
            ms,
        }
    }

    #[test]
    fn algorithms_are_named_without_the_prefix() {
        let named = |kind, algo| algorithm_name(kind, &cand(algo, None));
        assert_eq!(named(ConvKind::Forward, 1), "IMPLICIT_PRECOMP_GEMM");
        assert_eq!(named(ConvKind::Forward, 4), "FFT");
        assert_eq!(named(ConvKind::BackwardData, 1), "ALGO_1");
        assert_eq!(named(ConvKind::BackwardFilter, 3), "ALGO_3");
        assert_eq!(named(ConvKind::BackwardFilter, 6), "FFT_TILING");
        assert_eq!(named(ConvKind::Forward, 99), "algorithm 99");
        let tensor = Candidate {
            math: sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
            ..cand(1, None)
        };
        assert_eq!(
            algorithm_name(ConvKind::Forward, &tensor),
            "IMPLICIT_PRECOMP_GEMM (tensor cores)"
        );
    }

    #[test]
    fn an_nchw_call_adds_its_runs_and_the_transposes() {
        // Two runs of 3 images and one of 2: the plans order their candidates differently.
        let three = [cand(4, Some(2.0)), cand(1, Some(3.0)), cand(0, None)];
        let two = [cand(1, Some(2.5)), cand(4, Some(1.5))];
        let runs = [(&three[..], 0), (&three[..], 0), (&two[..], 1)];
        // The call ran FFT in every run (2 + 2 + 1.5 ms) and took 7 ms: 1.5 ms of transposes.
        let transposes = transposes_ms(7.0, &runs);
        assert_eq!(transposes, Some(1.5));
        let plans = [&three[..], &three[..], &two[..]];
        assert_eq!(staged_ms(&plans, &three[0], transposes), Some(7.0));
        assert_eq!(staged_ms(&plans, &three[1], transposes), Some(10.0));
        // Untimed in one run, or transposes unknown: no estimate.
        assert_eq!(staged_ms(&plans, &three[2], transposes), None);
        assert_eq!(staged_ms(&plans, &three[0], None), None);
        // A call timed faster than its runs' convolutions: no negative transposes.
        assert_eq!(transposes_ms(4.0, &runs), Some(0.0));
        assert_eq!(transposes_ms(7.0, &[(&three[..], 2)]), None);
    }
}
