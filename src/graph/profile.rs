//! Where the time of a step goes: the executor can time every op with the backend synchronised
//! before and after it, so GPU work is counted in the op that enqueued it.

use std::collections::BTreeMap;
use std::time::Duration;

/// Which pass an op ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pass {
    Forward,
    Backward,
    /// Outputs recomputed for a backward that reads them ([`crate::graph::Op::recompute`]).
    Recompute,
    /// The optimiser's parameter update (recorded by its caller).
    Update,
}

impl Pass {
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::Backward => "backward",
            Pass::Recompute => "recompute",
            Pass::Update => "update",
        }
    }
}

/// Time of one kind of op in one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    pub op: &'static str,
    pub pass: Pass,
    pub calls: u64,
    pub seconds: f64,
}

/// Accumulated op times (see [`crate::Executor::set_profiling`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    times: BTreeMap<(&'static str, Pass), (u64, Duration)>,
}

impl Profile {
    /// Adds one call of `op` in `pass` that took `elapsed`.
    pub fn record(&mut self, op: &'static str, pass: Pass, elapsed: Duration) {
        self.add(op, pass, 1, elapsed);
    }

    /// Adds `calls` calls of `op` in `pass` that took `elapsed` together.
    pub fn add(&mut self, op: &'static str, pass: Pass, calls: u64, elapsed: Duration) {
        let entry = self.times.entry((op, pass)).or_default();
        entry.0 += calls;
        entry.1 += elapsed;
    }

    /// Every (op, pass), slowest first.
    pub fn rows(&self) -> Vec<OpTime> {
        let mut rows: Vec<OpTime> = self
            .times
            .iter()
            .map(|(&(op, pass), &(calls, time))| OpTime {
                op,
                pass,
                calls,
                seconds: time.as_secs_f64(),
            })
            .collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        rows
    }

    /// Seconds over every op.
    pub fn total_seconds(&self) -> f64 {
        self.times.values().map(|(_, t)| t.as_secs_f64()).sum()
    }
}
