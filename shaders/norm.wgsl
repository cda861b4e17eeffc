// Batch normalisation over the last axis of a rows × channels tensor (NHWC flattened), with
// PyTorch's semantics: the biased batch variance normalises, the unbiased one feeds the running
// average, and running = (1 − momentum) · running + momentum · batch.

// bn_apply: 0 normalises with the saved batch mean / invstd, 1 with the running mean / var.
override INFERENCE: u32 = 0u;

const RWG: u32 = 256u;

struct Params {
    rows: u32,
    channels: u32,
    eps: f32,
    momentum: f32,
}

var<workgroup> s_sum: array<f32, 256>;
var<workgroup> s_sq: array<f32, 256>;

// Tree-sums s_sum and s_sq over the workgroup; the totals end in slot 0.
fn reduce_pair(lid: u32) {
    workgroupBarrier();
    for (var s = RWG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            s_sum[lid] += s_sum[lid + s];
            s_sq[lid] += s_sq[lid + s];
        }
        workgroupBarrier();
    }
}

// ---- statistics: one workgroup per channel --------------------------------------------------

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> save_mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> save_invstd: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(5) var<uniform> P: Params;

@compute @workgroup_size(256)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let c = wid.x + wid.y * nwg.x;
    let live = c < P.channels;
    var s = 0.0;
    var q = 0.0;
    if live {
        // Σ(x − k) and Σ(x − k)² with k the channel's first value: no cancellation when the
        // mean is large.
        let k = x[c];
        for (var r = lid; r < P.rows; r += RWG) {
            let d = x[r * P.channels + c] - k;
            s += d;
            q += d * d;
        }
    }
    s_sum[lid] = s;
    s_sq[lid] = q;
    reduce_pair(lid);
    if live && lid == 0u {
        let n = f32(P.rows);
        let d_mean = s_sum[0] / n;
        let v = max(s_sq[0] / n - d_mean * d_mean, 0.0);
        let mu = x[c] + d_mean;
        save_mean[c] = mu;
        save_invstd[c] = 1.0 / sqrt(v + P.eps);
        let m = P.momentum;
        running_mean[c] = (1.0 - m) * running_mean[c] + m * mu;
        running_var[c] = (1.0 - m) * running_var[c] + m * v * n / (n - 1.0);
    }
}

// ---- y = (x − mean) · γ · invstd + β -------------------------------------------------------

@group(0) @binding(0) var<storage, read> ax: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
// invstd (training) or the running variance (inference)
@group(0) @binding(4) var<storage, read> spread: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<uniform> A: Params;

@compute @workgroup_size(256)
fn bn_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= A.rows * A.channels {
        return;
    }
    let c = i % A.channels;
    var invstd = spread[c];
    if INFERENCE == 1u {
        invstd = 1.0 / sqrt(spread[c] + A.eps);
    }
    y[i] = (ax[i] - mean[c]) * (gamma[c] * invstd) + beta[c];
}

// ---- backward: Σ dy and Σ dy·(x − mean) per channel -----------------------------------------

@group(0) @binding(0) var<storage, read> bx: array<f32>;
@group(0) @binding(1) var<storage, read> bdy: array<f32>;
@group(0) @binding(2) var<storage, read> bmean: array<f32>;
@group(0) @binding(3) var<storage, read> binvstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(6) var<uniform> B: Params;

@compute @workgroup_size(256)
fn bn_backward_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let c = wid.x + wid.y * nwg.x;
    let live = c < B.channels;
    var s = 0.0;
    var t = 0.0;
    if live {
        let m = bmean[c];
        for (var r = lid; r < B.rows; r += RWG) {
            let i = r * B.channels + c;
            let g = bdy[i];
            s += g;
            t += g * (bx[i] - m);
        }
    }
    s_sum[lid] = s;
    s_sq[lid] = t;
    reduce_pair(lid);
    if live && lid == 0u {
        dbeta[c] = s_sum[0];
        dgamma[c] = s_sq[0] * binvstd[c];
    }
}

// dx = γ·invstd · (dy − dβ/N − (x − mean) · dγ·invstd/N)
@group(0) @binding(0) var<storage, read> dx_x: array<f32>;
@group(0) @binding(1) var<storage, read> dx_dy: array<f32>;
@group(0) @binding(2) var<storage, read> dx_gamma: array<f32>;
@group(0) @binding(3) var<storage, read> dx_mean: array<f32>;
@group(0) @binding(4) var<storage, read> dx_invstd: array<f32>;
@group(0) @binding(5) var<storage, read> dx_dgamma: array<f32>;
@group(0) @binding(6) var<storage, read> dx_dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<uniform> D: Params;

@compute @workgroup_size(256)
fn bn_backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= D.rows * D.channels {
        return;
    }
    let c = i % D.channels;
    let n = f32(D.rows);
    let is = dx_invstd[c];
    let a = dx_gamma[c] * is;
    let b = dx_dbeta[c] / n;
    let k = dx_dgamma[c] * is / n;
    dx[i] = a * (dx_dy[i] - b - (dx_x[i] - dx_mean[c]) * k);
}
