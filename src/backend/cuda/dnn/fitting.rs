//! One scratch budget shared by the strict-fp32 convolutions of a step, fitted per step context
//! at its first run ([`super::Fp32ConvScratch::Fitted`]).

use std::collections::HashMap;

use super::{ConvKey, ConvUse, Dnn};
use crate::backend::tuning::{budget_curve, least_budget};
use crate::backend::ConvTuning;

/// A step context: the executor's id of its plan and mode, and whether TF32 was on.
pub(crate) type StepContext = (u64, bool);

/// The budgets fitted so far and the step running now.
#[derive(Debug, Default)]
pub(super) struct Fitting {
    current: Option<StepContext>,
    /// The budget of each context whose first run has ended (`None`: no limit).
    budgets: HashMap<StepContext, Option<usize>>,
    /// The slack the budgets were fitted with (its bits).
    slack: Option<u32>,
    /// The convolutions of the running step, while it is its context's first run.
    pub(super) uses: HashMap<ConvKey, ConvUse>,
}

impl Fitting {
    /// Whether the running step is its context's first: calls take their fastest way and are
    /// recorded in `uses`.
    pub(super) fn first_run(&self) -> bool {
        self.current.is_some_and(|c| !self.budgets.contains_key(&c))
    }

    /// Starts a step of `context`. The step that ends, where it was its context's first run
    /// and called convolutions, gets the budget `fit` makes of its calls. Budgets fitted with
    /// another slack are forgotten.
    pub(super) fn begin(
        &mut self,
        context: StepContext,
        slack: f32,
        fit: impl FnOnce(HashMap<ConvKey, ConvUse>) -> Option<usize>,
    ) {
        if self.slack != Some(slack.to_bits()) {
            self.budgets.clear();
            self.slack = Some(slack.to_bits());
        }
        let uses = std::mem::take(&mut self.uses);
        if let Some(ended) = self.current.replace(context) {
            if !self.budgets.contains_key(&ended) && !uses.is_empty() {
                self.budgets.insert(ended, fit(uses));
            }
        }
    }

    /// The running step's budget, bytes (`None`: no limit, as in a context's first run).
    pub(super) fn budget(&self) -> Option<usize> {
        self.current
            .and_then(|c| self.budgets.get(&c).copied().flatten())
    }
}

impl Dnn {
    /// Starts a step of `context` under [`super::Fp32ConvScratch::Fitted`] with `slack`.
    pub(crate) fn begin_step(&mut self, context: StepContext, slack: f32) {
        let mut fitting = std::mem::take(&mut self.fitting);
        fitting.begin(context, slack, |uses| {
            let tunings: Vec<ConvTuning> = uses
                .into_iter()
                .map(|(key, used)| self.tuning(key, used))
                .collect();
            let point = least_budget(&budget_curve(&tunings, 1), f64::from(slack))?;
            usize::try_from(point.budget_bytes).ok()
        });
        self.fitting = fitting;
    }

    /// The scratch budget of the running step's strict-fp32 convolutions (`None`: no limit).
    pub(crate) fn fitted_budget(&self) -> Option<usize> {
        self.fitting.budget()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ConvMath;
    use super::*;
    use crate::backend::{Conv2dParams, ConvKind};

    fn key(batch: usize) -> ConvKey {
        let p = Conv2dParams {
            batch,
            in_h: 8,
            in_w: 8,
            in_channels: 3,
            out_channels: 4,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let math = ConvMath {
            tf32: false,
            direct_only: false,
            nchw: false,
            scratch: None,
        };
        (ConvKind::Forward, p, math)
    }

    fn call(fitting: &mut Fitting, batch: usize) {
        if fitting.first_run() {
            let used = ConvUse {
                calls: 1,
                nchw: false,
                images: batch,
            };
            fitting.uses.insert(key(batch), used);
        }
    }

    #[test]
    fn each_context_is_fitted_from_its_first_run() {
        let (train, eval) = ((1, false), (2, false));
        let mut f = Fitting::default();
        assert!(!f.first_run(), "outside a step nothing is fitted");
        // Training's first step: no limit, its calls recorded.
        f.begin(train, 0.1, |_| panic!("nothing ended"));
        assert!(f.first_run() && f.budget().is_none());
        call(&mut f, 8);
        // An evaluation step ends it: the training context gets its budget from its calls.
        let mut fitted = Vec::new();
        f.begin(eval, 0.1, |uses| {
            fitted.extend(uses.into_keys());
            Some(100)
        });
        assert_eq!(fitted, [key(8)]);
        assert!(f.first_run() && f.budget().is_none());
        call(&mut f, 4);
        f.begin(train, 0.1, |uses| {
            assert!(uses.contains_key(&key(4)));
            None
        });
        assert!(!f.first_run());
        assert_eq!(f.budget(), Some(100));
        // Evaluation fitted no budget: no limit, and not fitted again.
        f.begin(eval, 0.1, |_| panic!("training was fitted"));
        assert_eq!(f.budget(), None);
        assert!(!f.first_run());
        // TF32 on: another context.
        f.begin((1, true), 0.1, |_| panic!("evaluation was fitted"));
        assert!(f.first_run());
        // Another slack: every context runs a first step again.
        f.begin(train, 0.2, |_| panic!("no call in the TF32 step"));
        assert!(f.first_run() && f.budget().is_none());
    }
}
