// Batch normalisation over the last axis of a rows × channels tensor (NHWC flattened), with
// PyTorch's semantics: the biased batch variance normalises, the unbiased one feeds the running
// average, and running = (1 − momentum) · running + momentum · batch.
//
// The per-channel sums are two-stage column reductions (src/backend/wgpu/norm.rs chooses the
// slabs). bn_partial / bn_backward_partial give each workgroup a tile of TILE channels (one per
// lane, so a subgroup reads contiguous runs of a row) and a slab of slab_rows rows, split by
// slabs (W.first .. W.end), and write one pair of partial sums per channel and slab to scratch:
// partial[c · slabs + s] the first sum, partial[(channels + c) · slabs + s] the second. The
// finishing kernels, one workgroup per channel, add a channel's slabs in a fixed order, so the
// result does not depend on how the slabs were dispatched and there are no float atomics. The
// elementwise kernels are split by elements. The rows × channels tensors are windowed,
// per-channel vectors and the partials bound whole.

// bn_apply: 0 normalises with the saved batch mean / invstd, 1 with the running mean / var.
override INFERENCE: u32 = 0u;

const RWG: u32 = 256u;
// Channels per workgroup of the partial kernels, and rows read side by side: TILE · LANES = RWG.
const TILE: u32 = 32u;
const LANES: u32 = 8u;

struct Params {
    rows: u32,
    channels: u32,
    eps: f32,
    momentum: f32,
    // 1: a ReLU follows (forward output max(0, ·); backward masks dy where that was not positive)
    relu: u32,
}

// The reductions' parameters: Params, then the slabs.
struct Stats {
    rows: u32,
    channels: u32,
    eps: f32,
    momentum: f32,
    relu: u32,
    slab_rows: u32,
    slabs: u32,
}

var<workgroup> s_sum: array<f32, 256>;
var<workgroup> s_sq: array<f32, 256>;

// Tree-sums s_sum and s_sq over the workgroup's slots with the same index modulo `stride` (a
// power of two): slot j < stride ends with the total of slots j, j + stride, ...
fn reduce_pair(lid: u32, stride: u32) {
    workgroupBarrier();
    for (var s = RWG / 2u; s >= stride; s = s / 2u) {
        if lid < s {
            s_sum[lid] += s_sum[lid + s];
            s_sq[lid] += s_sq[lid + s];
        }
        workgroupBarrier();
    }
}

// The slab of a partial kernel's workgroup, and the first channel of its tile.
fn slab_group(wid: vec3<u32>, nwg: vec3<u32>, channels: u32) -> vec2<u32> {
    let g = group_index(wid, nwg);
    let tiles = (channels + TILE - 1u) / TILE;
    return vec2<u32>(W.first + g / tiles, (g % tiles) * TILE);
}

// ---- training statistics --------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> x: array<f32>;
// The first row of x, each channel's shift.
@group(0) @binding(1) var<storage, read> shift: array<f32>;
// Σ(x − k) and Σ(x − k)² per channel and slab.
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<uniform> P: Stats;

@compute @workgroup_size(256)
fn bn_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let g = slab_group(wid, nwg, P.channels);
    if g.x >= W.end {
        return;
    }
    let c = g.y + lid % TILE;
    let first = g.x * P.slab_rows;
    let end = min(first + P.slab_rows, P.rows);
    let live = c < P.channels;
    var s = 0.0;
    var q = 0.0;
    if live {
        // Σ(x − k) and Σ(x − k)² with k the channel's first value: no cancellation when the
        // mean is large.
        let k = shift[c];
        for (var r = first + lid / TILE; r < end; r += LANES) {
            let d = x[at(0u, r * P.channels + c)] - k;
            s += d;
            q += d * d;
        }
    }
    s_sum[lid] = s;
    s_sq[lid] = q;
    reduce_pair(lid, TILE);
    if live && lid < TILE {
        partial[c * P.slabs + g.x] = s_sum[lid];
        partial[(P.channels + c) * P.slabs + g.x] = s_sq[lid];
    }
}

// ---- finishing: one workgroup per channel ---------------------------------------------------

// The slabs' partial pairs (bn_partial or bn_backward_partial).
@group(0) @binding(0) var<storage, read> fin_partial: array<f32>;

// Adds the slabs' partial pairs of channel `c` over the workgroup in a fixed order; the totals
// end in s_sum[0] and s_sq[0].
fn slab_totals(lid: u32, c: u32, channels: u32, slabs: u32) {
    var a = 0.0;
    var b = 0.0;
    if c < channels {
        for (var s = lid; s < slabs; s += RWG) {
            a += fin_partial[c * slabs + s];
            b += fin_partial[(channels + c) * slabs + s];
        }
    }
    s_sum[lid] = a;
    s_sq[lid] = b;
    reduce_pair(lid, 1u);
}

@group(0) @binding(1) var<storage, read> fin_shift: array<f32>;
@group(0) @binding(2) var<storage, read_write> save_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> save_invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(6) var<uniform> F: Stats;

// The mean, invstd and running averages of channel group_index from bn_partial's slabs.
@compute @workgroup_size(256)
fn bn_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let c = group_index(wid, nwg);
    slab_totals(lid, c, F.channels, F.slabs);
    if c < F.channels && lid == 0u {
        let n = f32(F.rows);
        let d_mean = s_sum[0] / n;
        let v = max(s_sq[0] / n - d_mean * d_mean, 0.0);
        let mu = fin_shift[c] + d_mean;
        save_mean[c] = mu;
        save_invstd[c] = 1.0 / sqrt(v + F.eps);
        let m = F.momentum;
        running_mean[c] = (1.0 - m) * running_mean[c] + m * mu;
        running_var[c] = (1.0 - m) * running_var[c] + m * v * n / (n - 1.0);
    }
}

// ---- y = (x − mean) · γ · invstd + β, ReLU'd when A.relu == 1 ------------------------------

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
    let z = (ax[at(0u, i)] - mean[c]) * (gamma[c] * invstd) + beta[c];
    y[at(5u, i)] = select(z, max(z, 0.0), A.relu == 1u);
}

// ---- backward: Σ dy and Σ dy·(x − mean) per channel -----------------------------------------

// dy, or with a ReLU after the normalisation dy where the forward's output (x − mean)·scale + β,
// computed as bn_apply computes it, was positive.
fn masked(dy: f32, x: f32, mean: f32, scale: f32, shift: f32, relu: u32) -> f32 {
    return select(dy, 0.0, relu == 1u && !((x - mean) * scale + shift > 0.0));
}

@group(0) @binding(0) var<storage, read> bx: array<f32>;
@group(0) @binding(1) var<storage, read> bdy: array<f32>;
@group(0) @binding(2) var<storage, read> bmean: array<f32>;
@group(0) @binding(3) var<storage, read> bgamma: array<f32>;
@group(0) @binding(4) var<storage, read> binvstd: array<f32>;
@group(0) @binding(5) var<storage, read> bbeta: array<f32>;
// Σ dy and Σ dy·(x − mean) per channel and slab.
@group(0) @binding(6) var<storage, read_write> bpartial: array<f32>;
@group(0) @binding(7) var<uniform> B: Stats;

@compute @workgroup_size(256)
fn bn_backward_partial(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let g = slab_group(wid, nwg, B.channels);
    if g.x >= W.end {
        return;
    }
    let c = g.y + lid % TILE;
    let first = g.x * B.slab_rows;
    let end = min(first + B.slab_rows, B.rows);
    let live = c < B.channels;
    var s = 0.0;
    var t = 0.0;
    if live {
        let m = bmean[c];
        let scale = bgamma[c] * binvstd[c];
        let shift = bbeta[c];
        for (var r = first + lid / TILE; r < end; r += LANES) {
            let i = r * B.channels + c;
            let v = bx[at(0u, i)];
            let dy = masked(bdy[at(1u, i)], v, m, scale, shift, B.relu);
            s += dy;
            t += dy * (v - m);
        }
    }
    s_sum[lid] = s;
    s_sq[lid] = t;
    reduce_pair(lid, TILE);
    if live && lid < TILE {
        bpartial[c * B.slabs + g.x] = s_sum[lid];
        bpartial[(B.channels + c) * B.slabs + g.x] = s_sq[lid];
    }
}

@group(0) @binding(1) var<storage, read> fin_invstd: array<f32>;
@group(0) @binding(2) var<storage, read> fin_gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> dbeta: array<f32>;
// The coefficients of bn_backward_dx: [a | b | k] per channel.
@group(0) @binding(5) var<storage, read_write> coef: array<f32>;
@group(0) @binding(6) var<uniform> G: Stats;

// dβ = Σ dy and dγ = Σ dy·(x − mean)·invstd of channel group_index from the slabs, and
// a = γ·invstd (the forward's scale), b = dβ/N, k = dγ·invstd/N.
@compute @workgroup_size(256)
fn bn_backward_finish(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let c = group_index(wid, nwg);
    slab_totals(lid, c, G.channels, G.slabs);
    if c < G.channels && lid == 0u {
        let n = f32(G.rows);
        let is = fin_invstd[c];
        let dg = s_sq[0] * is;
        dbeta[c] = s_sum[0];
        dgamma[c] = dg;
        coef[c] = fin_gamma[c] * is;
        coef[G.channels + c] = s_sum[0] / n;
        coef[2u * G.channels + c] = dg * is / n;
    }
}

// dx = a · (dy − b − (x − mean) · k), dy masked as in bn_backward_partial
@group(0) @binding(0) var<storage, read> dx_x: array<f32>;
@group(0) @binding(1) var<storage, read> dx_dy: array<f32>;
@group(0) @binding(2) var<storage, read> dx_mean: array<f32>;
@group(0) @binding(3) var<storage, read> dx_coef: array<f32>;
@group(0) @binding(4) var<storage, read> dx_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<uniform> D: Params;

@compute @workgroup_size(256)
fn bn_backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let c = i % D.channels;
    let a = dx_coef[c];
    let b = dx_coef[D.channels + c];
    let k = dx_coef[2u * D.channels + c];
    let v = dx_x[at(0u, i)];
    let m = dx_mean[c];
    let dy = masked(dx_dy[at(1u, i)], v, m, a, dx_beta[c], D.relu);
    dx[at(5u, i)] = a * (dy - b - (v - m) * k);
}
