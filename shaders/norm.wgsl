// Batch normalisation over the last axis of a rows × channels tensor (NHWC flattened), with
// PyTorch's semantics: the biased batch variance normalises, the unbiased one feeds the running
// average, and running = (1 − momentum) · running + momentum · batch.
//
// The statistics kernels run one workgroup per channel and are split by rows (W.first .. W.end):
// each dispatch adds its rows' sums to those of the rows before it, kept in the outputs, and the
// dispatch that ends at the last row turns them into the results. The elementwise kernels are
// split by elements. The rows × channels tensors are windowed, per-channel vectors bound whole.

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
// The first row of x, each channel's shift.
@group(0) @binding(1) var<storage, read> shift: array<f32>;
// Σ(x − k) and Σ(x − k)² of the rows so far until the last dispatch, then the results.
@group(0) @binding(2) var<storage, read_write> save_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> save_invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(6) var<uniform> P: Params;

@compute @workgroup_size(256)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let c = group_index(wid, nwg);
    let live = c < P.channels;
    var s = 0.0;
    var q = 0.0;
    if live {
        // Σ(x − k) and Σ(x − k)² with k the channel's first value: no cancellation when the
        // mean is large.
        let k = shift[c];
        for (var r = W.first + lid; r < W.end; r += RWG) {
            let d = x[at(0u, r * P.channels + c)] - k;
            s += d;
            q += d * d;
        }
    }
    s_sum[lid] = s;
    s_sq[lid] = q;
    reduce_pair(lid);
    if live && lid == 0u {
        var total = s_sum[0];
        var total_sq = s_sq[0];
        if W.first > 0u {
            total += save_mean[c];
            total_sq += save_invstd[c];
        }
        if W.end < P.rows {
            save_mean[c] = total;
            save_invstd[c] = total_sq;
            return;
        }
        let n = f32(P.rows);
        let d_mean = total / n;
        let v = max(total_sq / n - d_mean * d_mean, 0.0);
        let mu = shift[c] + d_mean;
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
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let c = i % A.channels;
    var invstd = spread[c];
    if INFERENCE == 1u {
        invstd = 1.0 / sqrt(spread[c] + A.eps);
    }
    y[at(5u, i)] = (ax[at(0u, i)] - mean[c]) * (gamma[c] * invstd) + beta[c];
}

// ---- backward: Σ dy and Σ dy·(x − mean) per channel -----------------------------------------

@group(0) @binding(0) var<storage, read> bx: array<f32>;
@group(0) @binding(1) var<storage, read> bdy: array<f32>;
@group(0) @binding(2) var<storage, read> bmean: array<f32>;
@group(0) @binding(3) var<storage, read> binvstd: array<f32>;
// Σ dy·(x − mean) of the rows so far until the last dispatch, then dγ.
@group(0) @binding(4) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(6) var<uniform> B: Params;

@compute @workgroup_size(256)
fn bn_backward_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let c = group_index(wid, nwg);
    let live = c < B.channels;
    var s = 0.0;
    var t = 0.0;
    if live {
        let m = bmean[c];
        for (var r = W.first + lid; r < W.end; r += RWG) {
            let i = r * B.channels + c;
            let g = bdy[at(1u, i)];
            s += g;
            t += g * (bx[at(0u, i)] - m);
        }
    }
    s_sum[lid] = s;
    s_sq[lid] = t;
    reduce_pair(lid);
    if live && lid == 0u {
        var total = s_sum[0];
        var total_t = s_sq[0];
        if W.first > 0u {
            total += dbeta[c];
            total_t += dgamma[c];
        }
        dbeta[c] = total;
        dgamma[c] = select(total_t, total_t * binvstd[c], W.end >= B.rows);
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
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let c = i % D.channels;
    let n = f32(D.rows);
    let is = dx_invstd[c];
    let a = dx_gamma[c] * is;
    let b = dx_dbeta[c] / n;
    let k = dx_dgamma[c] * is / n;
    dx[at(7u, i)] = a * (dx_dy[at(1u, i)] - b - (dx_x[at(0u, i)] - dx_mean[c]) * k);
}
