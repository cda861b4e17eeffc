//! Optimisers and learning-rate schedules against PyTorch over several steps
//! (fixtures from `scripts/make_optim_fixtures.py`), through the executor as training uses them.

mod common;

use common::fixtures::Fixture;
use common::{assert_close, Tol};
use magnet::layers;
use magnet::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig};
use magnet::{CpuBackend, Executor, Graph, HostTensor, Mode};

/// Runs `optimizer` on a graph whose loss is Σ param·g, so the gradient fed as `g` is exactly the
/// fixture's gradient of each step, and compares the parameter after every step.
fn check(case: &str, mut optimizer: impl Optimizer<CpuBackend>) {
    let fx = Fixture::load(case);
    let dims = fx.dims("start").to_vec();
    let mut g = Graph::<CpuBackend>::new();
    let param = g.param("w", dims.clone(), magnet::Init::Zeros).unwrap();
    let grad = g.input("g", dims.clone()).unwrap();
    let product = layers::mul(&mut g, param, grad).unwrap();
    let loss = layers::sum(&mut g, product).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 0).unwrap();
    let id = exec.graph().tensor_id("w").unwrap();
    let start = HostTensor::new(dims.clone(), fx.tensor("start").to_vec()).unwrap();
    exec.set_tensor(id, &start).unwrap();
    for step in 0..6 {
        let data = fx.tensor(&format!("grad{step}")).to_vec();
        let gv = HostTensor::new(dims.clone(), data).unwrap();
        exec.forward(&[(grad, &gv)], Mode::Train).unwrap();
        exec.backward(loss).unwrap();
        optimizer.step(&mut exec).unwrap();
        let want = fx.tensor(&format!("param{}", step + 1));
        // PyTorch and magnet both compute in f32 with the same formulas; the order of a few
        // operations differs (e.g. how the decay term is folded in), worth a few ulps per step
        // on values of order 1, compounded over 6 steps.
        assert_close(
            exec.tensor(id).unwrap().data(),
            want,
            Tol::rel_abs(1e-5, 1e-6),
            &format!("{case} step {}", step + 1),
        );
    }
}

fn param(fx: &Fixture, name: &str) -> f32 {
    fx.param(name)[0] as f32
}

#[test]
fn sgd_matches_pytorch() {
    check("optim_sgd", Sgd::new(SgdConfig::new(0.1)).unwrap());
    let fx = Fixture::load("optim_sgd_momentum_decay");
    let mut cfg = SgdConfig::new(param(&fx, "lr"))
        .momentum(param(&fx, "momentum"))
        .weight_decay(param(&fx, "weight_decay"));
    cfg.dampening = param(&fx, "dampening");
    check("optim_sgd_momentum_decay", Sgd::new(cfg).unwrap());
    let fx = Fixture::load("optim_sgd_nesterov");
    let cfg = SgdConfig::new(param(&fx, "lr"))
        .momentum(param(&fx, "momentum"))
        .nesterov(true)
        .weight_decay(param(&fx, "weight_decay"));
    check("optim_sgd_nesterov", Sgd::new(cfg).unwrap());
}

#[test]
fn adam_and_adamw_match_pytorch() {
    check("optim_adam", Adam::new(AdamConfig::new(0.01)).unwrap());
    let fx = Fixture::load("optim_adam_decay");
    let cfg = AdamConfig {
        beta1: param(&fx, "beta1"),
        beta2: param(&fx, "beta2"),
        eps: param(&fx, "eps"),
        ..AdamConfig::new(param(&fx, "lr")).weight_decay(param(&fx, "weight_decay"))
    };
    check("optim_adam_decay", Adam::new(cfg).unwrap());
    check(
        "optim_adamw",
        Adam::new(AdamConfig::adamw(0.01).weight_decay(0.1)).unwrap(),
    );
}

#[test]
fn schedules_match_pytorch() {
    let fx = Fixture::load("lr_schedules");
    for (name, schedule) in [
        (
            "step",
            LrSchedule::Step {
                step_size: 3,
                gamma: 0.5,
            },
        ),
        (
            "cosine",
            LrSchedule::Cosine {
                t_max: 8,
                eta_min: 0.001,
            },
        ),
    ] {
        let got: Vec<f32> = (0..20).map(|epoch| schedule.lr(0.1, epoch)).collect();
        // PyTorch's CosineAnnealingLR is a recursion in f64 and drifts from the closed form by
        // rounding only.
        assert_close(&got, fx.tensor(name), Tol::rel_abs(1e-5, 1e-7), name);
    }
    assert!(LrSchedule::Step {
        step_size: 0,
        gamma: 0.5
    }
    .validate()
    .is_err());
}

#[test]
fn optimizer_state_round_trips_and_rejects_another_kind() {
    let mut g = Graph::<CpuBackend>::new();
    let w = g.param("w", [4], magnet::Init::Ones).unwrap();
    let loss = layers::sum(&mut g, w).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 0).unwrap();
    let mut adam = Adam::new(AdamConfig::new(0.1)).unwrap();
    exec.forward(&[], Mode::Train).unwrap();
    exec.backward(loss).unwrap();
    adam.step(&mut exec).unwrap();
    let state = adam.export_state(&exec).unwrap();
    assert_eq!(state.entries.len(), 1);
    assert_eq!(state.entries[0].step, 1);
    let mut resumed = Adam::new(AdamConfig::new(0.1)).unwrap();
    resumed.import_state(&exec, &state).unwrap();
    assert_eq!(resumed.export_state(&exec).unwrap(), state);
    let mut sgd = Sgd::new(SgdConfig::new(0.1)).unwrap();
    assert!(sgd.import_state(&exec, &state).is_err());
}
