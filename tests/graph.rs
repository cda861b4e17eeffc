//! The graph and executor on the CPU backend: autodiff through every layer against finite
//! differences, gradient accumulation over fan-out, parameter names and initialisation, buffer
//! planning per shape and buffer reuse (inference, gradients), and typed errors on bad graphs.

use magnet::layers::{self, BatchNormConfig, ConvConfig};
use magnet::models::{UNet, UNetConfig, Upsampling};
use magnet::{CpuBackend, Error, Executor, Graph, HostTensor, Mode, NodeId};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn random(shape: &[usize], seed: u64) -> HostTensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    HostTensor::new(
        shape.to_vec(),
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
    )
    .unwrap()
}

/// A small net touching every differentiable layer: conv (stride 2, padding), batch norm, tanh,
/// max pool, bilinear upsampling, concat skip, transposed conv, residual add (fan-out of `a`),
/// sigmoid, flatten, dense, log-softmax; the loss is Σ y·r for a random r.
struct Net {
    graph: Graph<CpuBackend>,
    x: NodeId,
    r: NodeId,
    loss: NodeId,
}

fn build_net() -> Net {
    let mut g = Graph::new();
    let x = g.input_with_grad("x", [2, 9, 7, 3]).unwrap();
    let a = layers::conv2d(&mut g, "c1", x, ConvConfig::new(5, 3).padding(1)).unwrap();
    let a = layers::batchnorm2d(&mut g, "bn1", a, BatchNormConfig::default()).unwrap();
    let a = layers::tanh(&mut g, a).unwrap(); // [2, 9, 7, 5]
    let p = layers::maxpool2d(&mut g, a, 2, 2).unwrap(); // [2, 4, 3, 5]
    let p = layers::conv2d(&mut g, "c2", p, ConvConfig::new(6, 3).padding(1)).unwrap();
    let u = layers::upsample_bilinear2d(&mut g, p, 2, false).unwrap(); // [2, 8, 6, 6]
    let s = layers::conv2d(&mut g, "c3", a, ConvConfig::new(4, 2)).unwrap(); // [2, 8, 6, 4]
    let cat = layers::concat(&mut g, &[s, u]).unwrap(); // [2, 8, 6, 10]
    let d = layers::conv2d(&mut g, "down", cat, ConvConfig::new(7, 2).stride(2)).unwrap(); // [2, 4, 3, 7]
    let t = layers::conv2d_transpose(&mut g, "up", d, ConvConfig::new(4, 2).stride(2)).unwrap(); // [2, 8, 6, 4]
    let res = layers::add(&mut g, t, s).unwrap();
    let res = layers::sigmoid(&mut g, res).unwrap();
    let f = layers::flatten(&mut g, res).unwrap();
    let logits = layers::dense(&mut g, "fc", f, 3).unwrap();
    let y = layers::log_softmax(&mut g, logits).unwrap();
    let r = g.input("r", [2, 3]).unwrap();
    let weighted = layers::mul(&mut g, y, r).unwrap();
    let loss = layers::sum(&mut g, weighted).unwrap();
    Net {
        graph: g,
        x,
        r,
        loss,
    }
}

fn loss_at(
    exec: &mut Executor<CpuBackend>,
    net: (NodeId, NodeId, NodeId),
    x: &HostTensor,
    r: &HostTensor,
) -> f64 {
    exec.forward(&[(net.0, x), (net.1, r)], Mode::Train)
        .unwrap();
    exec.value(net.2).unwrap().data()[0] as f64
}

#[test]
fn every_layer_backward_matches_finite_differences() {
    let net = build_net();
    let ids = (net.x, net.r, net.loss);
    let names: Vec<String> = net
        .graph
        .tensors()
        .iter()
        .filter(|t| t.trainable)
        .map(|t| t.name.clone())
        .collect();
    let mut exec = Executor::new(CpuBackend::new(), net.graph, 7).unwrap();
    let x = random(&[2, 9, 7, 3], 1);
    let r = random(&[2, 3], 2);
    loss_at(&mut exec, ids, &x, &r);
    exec.backward(ids.2).unwrap();

    // Central differences in f32 with h = 1e-2: truncation error O(h²) ≈ 1e-4 relative to the
    // curvature, rounding error ≈ 1e-7·|L|/h ≈ 1e-4; so 2e-2 relative + 2e-3 absolute is a
    // margin of ~10× while a wrong gradient (sign, missing term, lost fan-out) is off by O(1).
    let h = 1e-2f32;
    let tol =
        |analytic: f64, numeric: f64| (analytic - numeric).abs() <= 2e-3 + 2e-2 * numeric.abs();
    let mut rng = ChaCha8Rng::seed_from_u64(3);

    let dx = exec.grad(ids.0).unwrap();
    for _ in 0..12 {
        let i = rng.random_range(0..x.data().len());
        let mut xp = x.clone();
        xp.data_mut()[i] += h;
        let mut xm = x.clone();
        xm.data_mut()[i] -= h;
        let numeric = (loss_at(&mut exec, ids, &xp, &r) - loss_at(&mut exec, ids, &xm, &r))
            / (2.0 * h as f64);
        let analytic = dx.data()[i] as f64;
        assert!(
            tol(analytic, numeric),
            "dL/dx[{i}]: analytic {analytic}, numeric {numeric}"
        );
    }

    for name in &names {
        let id = exec.graph().tensor_id(name).unwrap();
        let grad = exec.tensor_grad(id).unwrap();
        let value = exec.tensor(id).unwrap();
        for _ in 0..4 {
            let i = rng.random_range(0..value.data().len());
            let mut plus = value.clone();
            plus.data_mut()[i] += h;
            exec.set_tensor(id, &plus).unwrap();
            let lp = loss_at(&mut exec, ids, &x, &r);
            let mut minus = value.clone();
            minus.data_mut()[i] -= h;
            exec.set_tensor(id, &minus).unwrap();
            let lm = loss_at(&mut exec, ids, &x, &r);
            exec.set_tensor(id, &value).unwrap();
            let numeric = (lp - lm) / (2.0 * h as f64);
            let analytic = grad.data()[i] as f64;
            assert!(
                tol(analytic, numeric),
                "dL/d{name}[{i}]: analytic {analytic}, numeric {numeric}"
            );
        }
    }
}

#[test]
fn gradients_sum_over_any_number_of_consumers() {
    // y = x + x + x·x + relu(x): dy/dx = 2 + 2x + [x > 0]; x feeds five uses in four ops.
    let mut g = Graph::<CpuBackend>::new();
    let x = g.input_with_grad("x", [5]).unwrap();
    let a = layers::add(&mut g, x, x).unwrap();
    let b = layers::mul(&mut g, x, x).unwrap();
    let c = layers::relu(&mut g, x).unwrap();
    let ab = layers::add(&mut g, a, b).unwrap();
    let y = layers::add(&mut g, ab, c).unwrap();
    let loss = layers::sum(&mut g, y).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 0).unwrap();
    let xv = HostTensor::new([5], vec![-2.0, -0.5, 0.25, 1.0, 3.0]).unwrap();
    for _ in 0..2 {
        // Twice: the second backward must overwrite, not add to, the first one's gradients.
        exec.forward(&[(x, &xv)], Mode::Train).unwrap();
        exec.backward(loss).unwrap();
        let dx = exec.grad(x).unwrap();
        for (&xi, &gi) in xv.data().iter().zip(dx.data()) {
            let want = 2.0 + 2.0 * xi + if xi > 0.0 { 1.0 } else { 0.0 };
            assert!((gi - want).abs() < 1e-6, "x = {xi}: got {gi}, want {want}");
        }
    }
}

#[test]
fn parameters_are_named_and_initialised_like_pytorch() {
    let mut g = Graph::<CpuBackend>::new();
    let x = g.input("x", [1, 8, 8, 16]).unwrap();
    let y = layers::conv2d(
        &mut g,
        "inc.double_conv.0",
        x,
        ConvConfig::new(32, 3).padding(1),
    )
    .unwrap();
    let y =
        layers::batchnorm2d(&mut g, "inc.double_conv.1", y, BatchNormConfig::default()).unwrap();
    layers::conv2d_transpose(&mut g, "up1.up", y, ConvConfig::new(8, 2).stride(2)).unwrap();
    let names: Vec<&str> = g.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "inc.double_conv.0.weight",
            "inc.double_conv.0.bias",
            "inc.double_conv.1.weight",
            "inc.double_conv.1.bias",
            "inc.double_conv.1.running_mean",
            "inc.double_conv.1.running_var",
            "up1.up.weight",
            "up1.up.bias",
        ]
    );
    let exec = Executor::new(CpuBackend::new(), g, 1).unwrap();
    let tensor = |name: &str| exec.tensor(exec.graph().tensor_id(name).unwrap()).unwrap();
    // Conv2d: Kaiming-uniform (a = √5) gives bound 1/√fan_in with fan_in = 16·3·3.
    let w = tensor("inc.double_conv.0.weight");
    assert_eq!(w.shape().dims(), &[32, 3, 3, 16]);
    let bound = 1.0 / (16.0f32 * 9.0).sqrt();
    assert!(w.data().iter().all(|v| v.abs() <= bound));
    // A uniform sample of 4608 values reaches past 95% of its bound and has variance bound²/3.
    assert!(w.data().iter().any(|v| v.abs() > 0.95 * bound));
    let var = w.data().iter().map(|v| v * v).sum::<f32>() / w.data().len() as f32;
    assert!(
        (var / (bound * bound / 3.0) - 1.0).abs() < 0.1,
        "variance {var}"
    );
    // ConvTranspose2d: weights [in, kh, kw, out], fan_in = out·kh·kw = 8·2·2.
    let wt = tensor("up1.up.weight");
    assert_eq!(wt.shape().dims(), &[32, 2, 2, 8]);
    assert!(wt.data().iter().all(|v| v.abs() <= 1.0 / 32f32.sqrt()));
    assert!(tensor("inc.double_conv.1.weight")
        .data()
        .iter()
        .all(|&v| v == 1.0));
    assert!(tensor("inc.double_conv.1.running_var")
        .data()
        .iter()
        .all(|&v| v == 1.0));
    assert!(tensor("inc.double_conv.1.running_mean")
        .data()
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn same_seed_same_weights_and_running_stats_update_only_in_training() {
    let build = || {
        let mut g = Graph::<CpuBackend>::new();
        let x = g.input("x", [4, 3, 3, 2]).unwrap();
        let y = layers::batchnorm2d(&mut g, "bn", x, BatchNormConfig::default()).unwrap();
        let y = layers::conv2d(&mut g, "conv", y, ConvConfig::new(3, 1)).unwrap();
        (g, x, y)
    };
    let (g1, x, y) = build();
    let (g2, _, _) = build();
    let mut e1 = Executor::new(CpuBackend::new(), g1, 42).unwrap();
    let e2 = Executor::new(CpuBackend::new(), g2, 42).unwrap();
    let conv = e1.graph().tensor_id("conv.weight").unwrap();
    assert_eq!(e1.tensor(conv).unwrap(), e2.tensor(conv).unwrap());

    let input = random(&[4, 3, 3, 2], 5);
    let mean = e1.graph().tensor_id("bn.running_mean").unwrap();
    e1.forward(&[(x, &input)], Mode::Eval).unwrap();
    assert!(e1.tensor(mean).unwrap().data().iter().all(|&v| v == 0.0));
    let eval_out = e1.value(y).unwrap();
    e1.forward(&[(x, &input)], Mode::Train).unwrap();
    let running = e1.tensor(mean).unwrap();
    // running_mean = 0.9·0 + 0.1·batch_mean.
    for c in 0..2 {
        let batch_mean: f32 = input.data().iter().skip(c).step_by(2).sum::<f32>() / 36.0;
        assert!((running.data()[c] - 0.1 * batch_mean).abs() < 1e-6);
    }
    assert_ne!(e1.value(y).unwrap(), eval_out);
}

#[test]
fn plans_once_per_input_shape_and_follows_a_new_batch_size() {
    let mut g = Graph::<CpuBackend>::new();
    let x = g.input("x", [2, 6, 6, 3]).unwrap();
    let y = layers::conv2d(&mut g, "conv", x, ConvConfig::new(4, 3).padding(1)).unwrap();
    let pooled = layers::maxpool2d(&mut g, y, 2, 2).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 3).unwrap();
    let big = random(&[2, 6, 6, 3], 1);
    let small = HostTensor::new([1, 6, 6, 3], big.data()[..108].to_vec()).unwrap();
    exec.forward(&[(x, &big)], Mode::Eval).unwrap();
    let out_big = exec.value(pooled).unwrap();
    exec.forward(&[(x, &small)], Mode::Eval).unwrap();
    let out_small = exec.value(pooled).unwrap();
    assert_eq!(out_small.shape().dims(), &[1, 3, 3, 4]);
    // The first image gives the same result at batch 1 as at batch 2.
    assert_eq!(out_small.data(), &out_big.data()[..36]);
}

#[test]
fn bad_graphs_are_typed_errors() {
    let mut g = Graph::<CpuBackend>::new();
    let x = g.input("x", [1, 5, 5, 3]).unwrap();
    let labels = g.input("labels", [1, 5, 5, 4]).unwrap();
    // Wrong channel count for a concat partner is fine; a mismatched spatial size is not.
    let small = g.input("small", [1, 4, 4, 3]).unwrap();
    let err = layers::concat(&mut g, &[x, small]).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "concat", .. }), "{err}");
    assert!(err.to_string().contains("[1, 5, 5, 3]"), "{err}");
    let err = layers::add(&mut g, x, small).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "add", .. }), "{err}");
    // A kernel larger than the padded input.
    let err = layers::conv2d(&mut g, "big", x, ConvConfig::new(2, 7)).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "conv2d", .. }), "{err}");
    // Duplicate names.
    assert!(matches!(g.input("x", [1]).unwrap_err(), Error::Graph(_)));
    layers::conv2d(&mut g, "conv", x, ConvConfig::new(2, 3)).unwrap();
    let err = layers::conv2d(&mut g, "conv", x, ConvConfig::new(2, 3)).unwrap_err();
    assert!(err.to_string().contains("conv.weight"), "{err}");
    // Nodes of another graph cannot be used: the only way a cycle or a dangling edge could form.
    let mut other = Graph::<CpuBackend>::new();
    let foreign = other.input("x", [1, 5, 5, 3]).unwrap();
    assert!(matches!(
        layers::relu(&mut g, foreign).unwrap_err(),
        Error::Graph(_)
    ));

    let y = layers::mul(&mut g, x, x).unwrap();
    let masked = layers::sub(&mut g, labels, labels).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 0).unwrap();
    // Reading before any forward, and a node whose input was never fed, are errors naming why.
    assert!(matches!(exec.value(y).unwrap_err(), Error::Graph(_)));
    let xv = random(&[1, 5, 5, 3], 0);
    exec.forward(&[(x, &xv)], Mode::Eval).unwrap();
    exec.value(y).unwrap();
    let err = exec.value(masked).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    // A fed value with the wrong channel count fails in the op that cannot take it.
    let wrong = random(&[1, 5, 5, 2], 0);
    let err = exec.forward(&[(x, &wrong)], Mode::Eval).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    // Feeding a non-input and back-propagating from a non-scalar are errors.
    assert!(matches!(
        exec.forward(&[(y, &xv)], Mode::Eval).unwrap_err(),
        Error::Graph(_)
    ));
    exec.forward(&[(x, &xv)], Mode::Eval).unwrap();
    assert!(matches!(exec.backward(y).unwrap_err(), Error::Shape { .. }));
}

#[test]
fn batch_norm_running_statistics_converge_to_the_batch_statistics() {
    // Fed the same batch again and again, the running mean and variance converge to the batch
    // mean and unbiased variance, so evaluation mode reproduces training mode up to the factor
    // n/(n−1) between the unbiased and biased variance (n = 2·4·4 = 32 values per channel).
    let mut g = Graph::<CpuBackend>::new();
    let x = g.input("x", [2, 4, 4, 3]).unwrap();
    let y = layers::batchnorm2d(&mut g, "bn", x, BatchNormConfig::default()).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 0).unwrap();
    let mut input = random(&[2, 4, 4, 3], 9);
    input
        .data_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = 3.0 * *v + (i % 3) as f32);
    for _ in 0..200 {
        exec.forward(&[(x, &input)], Mode::Train).unwrap();
    }
    let train = exec.value(y).unwrap();
    exec.forward(&[(x, &input)], Mode::Eval).unwrap();
    let eval = exec.value(y).unwrap();
    let ratio = (31.0f32 / 32.0).sqrt();
    for (t, e) in train.data().iter().zip(eval.data()) {
        assert!((t * ratio - e).abs() < 1e-4, "train {t}, eval {e}");
    }
}

/// A U-Net (base 4, 32×32, batch 2, transposed-convolution upsampling), the sum of its logits
/// (a scalar to back-propagate from) and a batch for it.
fn small_unet() -> (Graph<CpuBackend>, UNet, NodeId, HostTensor) {
    let mut g = Graph::new();
    let cfg = UNetConfig {
        in_channels: 3,
        classes: 2,
        base_channels: 4,
        upsampling: Upsampling::Transposed,
    };
    let net = UNet::build(&mut g, cfg, 2, 32, 32).unwrap();
    let total = layers::sum(&mut g, net.logits).unwrap();
    (g, net, total, random(&[2, 32, 32, 3], 5))
}

#[test]
fn keeping_only_the_outputs_frees_memory_and_changes_no_result() {
    let (g, full_net, full_total, images) = small_unet();
    let mut full = Executor::new(CpuBackend::new(), g, 9).unwrap();
    full.forward(&[(full_net.image, &images)], Mode::Eval)
        .unwrap();
    let expected = full.value(full_net.logits).unwrap();

    let (g, net, total, _) = small_unet();
    let mut lean = Executor::new(CpuBackend::new(), g, 9).unwrap();
    lean.keep_only(&[net.logits]).unwrap();
    // Two steps on free lists, then on the layout planned from them.
    for _ in 0..3 {
        lean.forward(&[(net.image, &images)], Mode::Eval).unwrap();
        // Buffer reuse changes where values live, not a bit of what is computed.
        assert_eq!(lean.value(net.logits).unwrap(), expected);
    }
    // `full` holds every value of the forward; `lean` the most alive at one time (the skips,
    // the decoder's working set, the concat).
    let (lean_bytes, full_bytes) = (lean.plan_bytes(), full.plan_bytes());
    assert!(
        lean_bytes * 4 < full_bytes,
        "an evaluation keeping only the logits holds {lean_bytes} bytes, one keeping all {full_bytes}"
    );
    // Later steps allocate nothing more.
    lean.forward(&[(net.image, &images)], Mode::Eval).unwrap();
    assert_eq!(lean.plan_bytes(), lean_bytes);
    // Values not kept, and backward after an evaluation forward, say why they cannot be had.
    let err = lean.value(net.image).unwrap_err();
    assert!(err.to_string().contains("keep_only"), "{err}");
    let err = lean.backward(total).unwrap_err();
    assert!(err.to_string().contains("keep_only"), "{err}");

    // Training under keep_only: the same losses and weights as keeping everything, in less
    // memory; each training forward allows one backward.
    let train = |exec: &mut Executor<CpuBackend>, image: NodeId, total: NodeId| {
        let mut losses = Vec::new();
        for _ in 0..3 {
            exec.forward(&[(image, &images)], Mode::Train).unwrap();
            exec.backward(total).unwrap();
            losses.push(exec.value(total).unwrap().data()[0]);
            let w = exec.graph().tensor_id("inc.double_conv.0.weight").unwrap();
            let step = exec.tensor_grad(w).unwrap();
            let moved: Vec<f32> = exec
                .tensor(w)
                .unwrap()
                .data()
                .iter()
                .zip(step.data())
                .map(|(v, g)| v - 1e-3 * g)
                .collect();
            let shape = step.shape().clone();
            exec.set_tensor(w, &HostTensor::new(shape, moved).unwrap())
                .unwrap();
        }
        let w = exec.graph().tensor_id("inc.double_conv.0.weight").unwrap();
        (losses, exec.tensor(w).unwrap())
    };
    lean.keep_only(&[total]).unwrap();
    assert_eq!(
        train(&mut lean, net.image, total),
        train(&mut full, full_net.image, full_total)
    );
    assert!(
        lean.plan_bytes() < full.plan_bytes() * 3 / 4,
        "training keeping only the loss holds {} bytes, keeping all {}",
        lean.plan_bytes(),
        full.plan_bytes()
    );
    let err = lean.backward(total).unwrap_err();
    assert!(err.to_string().contains("backward"), "{err}");
}

#[test]
fn backward_reuses_gradient_buffers() {
    // A chain of twelve tanh: each op's gradient is needed only until backward has passed the
    // op, so two or three gradient buffers serve the whole chain (plus the input's own, kept).
    let mut g = Graph::<CpuBackend>::new();
    let x = g.input_with_grad("x", [4, 64]).unwrap();
    let mut y = x;
    for _ in 0..12 {
        y = layers::tanh(&mut g, y).unwrap();
    }
    let loss = layers::sum(&mut g, y).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 0).unwrap();
    let xv = random(&[4, 64], 3);
    exec.forward(&[(x, &xv)], Mode::Train).unwrap();
    let values = exec.plan_bytes();
    exec.backward(loss).unwrap();
    let with_grads = exec.plan_bytes();
    let tensor = 4 * 64 * 4;
    assert!(
        with_grads - values <= 4 * tensor,
        "backward added {} bytes for a chain of 12 tensors of {tensor}",
        with_grads - values
    );
    // The gradient still is that of the chain: d/dx of tanh∘…∘tanh, against the host.
    let dx = exec.grad(x).unwrap();
    for (i, (&g, &v)) in dx.data().iter().zip(xv.data()).enumerate() {
        let mut value = v as f64;
        let mut slope = 1.0;
        for _ in 0..12 {
            value = value.tanh();
            slope *= 1.0 - value * value;
        }
        assert!(
            (g as f64 - slope).abs() <= 1e-5 * slope.abs().max(1e-3),
            "dx[{i}]: {g} vs {slope}"
        );
    }
    // The second step reuses the first one's buffers; the third runs on the layout planned
    // from them, which holds no more, and later steps allocate nothing.
    let mut held = Vec::new();
    for _ in 0..3 {
        exec.forward(&[(x, &xv)], Mode::Train).unwrap();
        exec.backward(loss).unwrap();
        held.push(exec.plan_bytes());
    }
    assert_eq!(held[0], with_grads);
    assert!(
        held[1] <= with_grads && held[2] == held[1],
        "{with_grads} then {held:?}"
    );
    // An op node's gradient is not kept.
    let err = exec.grad(y).unwrap_err();
    assert!(
        err.to_string().contains("only inputs and parameters"),
        "{err}"
    );
}

/// conv → batch norm → ReLU twice, then a 1×1 conv and Σ; the ReLU fused into batch norm
/// (`batchnorm2d_relu`) or a layer of its own.
fn conv_bn_relu_chain(fused: bool) -> (Graph<CpuBackend>, NodeId, NodeId) {
    let mut g = Graph::new();
    let x = g.input("x", [2, 12, 10, 3]).unwrap();
    let mut y = x;
    for i in 0..2 {
        let conv = ConvConfig::new(8, 3).padding(1).bias(false);
        y = layers::conv2d(&mut g, &format!("c{i}"), y, conv).unwrap();
        let (name, bn) = (format!("bn{i}"), BatchNormConfig::default());
        y = match fused {
            true => layers::batchnorm2d_relu(&mut g, &name, y, bn).unwrap(),
            false => {
                let normalised = layers::batchnorm2d(&mut g, &name, y, bn).unwrap();
                layers::relu(&mut g, normalised).unwrap()
            }
        };
    }
    let y = layers::conv2d(&mut g, "out", y, ConvConfig::new(2, 1)).unwrap();
    let loss = layers::sum(&mut g, y).unwrap();
    (g, x, loss)
}

#[test]
fn batch_norm_relu_recomputes_its_output_instead_of_keeping_it() {
    let image = random(&[2, 12, 10, 3], 21);
    let params = [
        "c0.weight",
        "bn0.weight",
        "bn0.bias",
        "c1.weight",
        "bn1.weight",
        "bn1.bias",
        "out.weight",
        "out.bias",
    ];
    // Loss, parameter gradients and plan bytes after three training steps (the last on the
    // planned layout), keeping every value or only the loss.
    let run = |fused: bool, keep_only_loss: bool| {
        let (g, x, loss) = conv_bn_relu_chain(fused);
        let mut exec = Executor::new(CpuBackend::new(), g, 4).unwrap();
        if keep_only_loss {
            exec.keep_only(&[loss]).unwrap();
        }
        for _ in 0..3 {
            exec.forward(&[(x, &image)], Mode::Train).unwrap();
            exec.backward(loss).unwrap();
        }
        let grads: Vec<HostTensor> = params
            .iter()
            .map(|name| {
                let id = exec.graph().tensor_id(name).unwrap();
                exec.tensor_grad(id).unwrap()
            })
            .collect();
        (exec.value(loss).unwrap(), grads, exec.plan_bytes())
    };
    let (fused_loss, fused_grads, _) = run(true, false);
    let (lean_loss, lean_grads, lean_bytes) = run(true, true);
    let (separate_loss, separate_grads, _) = run(false, false);
    let (_, _, separate_lean_bytes) = run(false, true);
    // The recomputed output is the forward's bit for bit, so nothing downstream changes.
    assert_eq!((&lean_loss, &lean_grads), (&fused_loss, &fused_grads));
    // Fusing runs the same arithmetic as batch norm then ReLU: the mask `bn(x) > 0` is the
    // ReLU's `relu(bn(x)) > 0`.
    assert_eq!(
        (&fused_loss, &fused_grads),
        (&separate_loss, &separate_grads)
    );
    // Kept for backward: with separate layers both batch norm's input and the ReLU's output of
    // each block; fused, the input alone (the output lives only while a backward reads it).
    let tensor = 2 * 12 * 10 * 8 * std::mem::size_of::<f32>() as u64;
    assert!(
        lean_bytes + tensor <= separate_lean_bytes,
        "fused: {lean_bytes} bytes, separate: {separate_lean_bytes} (a block's tensor: {tensor})"
    );

    // In evaluation mode (running statistics) the fused backward masks the same way.
    let eval_grads = |fused: bool| {
        let (g, x, loss) = conv_bn_relu_chain(fused);
        let mut exec = Executor::new(CpuBackend::new(), g, 4).unwrap();
        exec.forward(&[(x, &image)], Mode::Eval).unwrap();
        exec.backward(loss).unwrap();
        let id = exec.graph().tensor_id("c0.weight").unwrap();
        exec.tensor_grad(id).unwrap()
    };
    assert_eq!(eval_grads(true), eval_grads(false));
}
