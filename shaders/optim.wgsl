// Fused SGD and Adam / AdamW updates with PyTorch's update rules; the scalar factors (bias
// corrections, decay) are computed on the host in f64, element arithmetic here in f32. One thread
// per element, split by elements (W.first .. W.end); every array is windowed.

struct Sgd {
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    // 1 − dampening
    damp: f32,
    first_step: u32,
    nesterov: u32,
}

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf: array<f32>;
@group(0) @binding(3) var<uniform> S: Sgd;

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let w = param[at(1u, i)];
    var d = grad[at(0u, i)];
    if S.weight_decay != 0.0 {
        d = d + S.weight_decay * w;
    }
    var b = d;
    if S.first_step == 0u {
        b = buf[at(2u, i)] * S.momentum + S.damp * d;
    }
    buf[at(2u, i)] = b;
    if S.nesterov == 1u {
        d = d + S.momentum * b;
    } else {
        d = b;
    }
    param[at(1u, i)] = w + -S.lr * d;
}

@group(0) @binding(0) var<storage, read> pgrad: array<f32>;
@group(0) @binding(1) var<storage, read_write> pparam: array<f32>;
@group(0) @binding(2) var<uniform> Q: Sgd;

// SGD without momentum (the momentum buffer is not touched).
@compute @workgroup_size(256)
fn sgd_plain(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let w = pparam[at(1u, i)];
    var d = pgrad[at(0u, i)];
    if Q.weight_decay != 0.0 {
        d = d + Q.weight_decay * w;
    }
    pparam[at(1u, i)] = w + -Q.lr * d;
}

struct Adam {
    // 1 − lr·wd for AdamW, else 1
    decay: f32,
    // wd for Adam's L2 term, else 0
    l2: f32,
    // lr / (1 − β1^t)
    step_size: f32,
    // sqrt(1 − β2^t)
    bc2_sqrt: f32,
    // 1 − β1
    w1: f32,
    beta2: f32,
    // 1 − β2
    w2: f32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> agrad: array<f32>;
@group(0) @binding(1) var<storage, read_write> aparam: array<f32>;
@group(0) @binding(2) var<storage, read_write> m1: array<f32>;
@group(0) @binding(3) var<storage, read_write> m2: array<f32>;
@group(0) @binding(4) var<uniform> A: Adam;

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let w = aparam[at(1u, i)] * A.decay;
    var g = agrad[at(0u, i)];
    if A.l2 != 0.0 {
        g = g + A.l2 * w;
    }
    // PyTorch's lerp(m, g, 1 − β1) takes one of two algebraically equal forms.
    var m = m1[at(2u, i)];
    if A.w1 < 0.5 {
        m = m + A.w1 * (g - m);
    } else {
        m = g - (g - m) * (1.0 - A.w1);
    }
    let v = m2[at(3u, i)] * A.beta2 + A.w2 * g * g;
    m1[at(2u, i)] = m;
    m2[at(3u, i)] = v;
    aparam[at(1u, i)] = w + -A.step_size * (m / (sqrt(v) / A.bc2_sqrt + A.eps));
}
