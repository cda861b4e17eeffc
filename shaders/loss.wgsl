// Losses with their gradients (softmax cross-entropy / focal, sigmoid binary cross-entropy, soft
// Dice), foreground masks, the Euclidean distance transform and per-image confusion counts.
//
// Labels are class indices stored as f32. A label that is neither an integer class in
// [0, classes) nor the ignore index contributes nothing and is reported through the call's
// `status` words (op code, row, label bits), which the host reads back to return an error.
// Scalar losses are sums of per-row terms, written to a scratch buffer and summed by
// `column_sums`, so no kernel needs float atomics.
//
// Kernels with a thread per row (or element, column) are split by rows: W.first .. W.end are the
// rows of the dispatch, and the per-row arrays are windowed; the sums over rows add up the rows
// of each dispatch to what the dispatches before it left. Class weights, status words, sums and
// counters are bound whole.

// loss_finish: 0 cross-entropy (totals = [Σa, Σa·l]), 1 binary cross-entropy (totals = [Σ]).
override MODE: u32 = 0u;

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// The class of label v, -1 when it is the ignore index, -2 when it is not a class.
fn class_of(v: f32, classes: u32, ignore: u32, has_ignore: u32) -> i32 {
    if !(v >= 0.0) || fract(v) != 0.0 || v >= 4294967296.0 {
        return -2;
    }
    let k = u32(v);
    if has_ignore == 1u && k == ignore {
        return -1;
    }
    if k >= classes {
        return -2;
    }
    return i32(k);
}


// Records the first bad label: (op, row, label bits). Op codes: 1 cross-entropy, 2 Dice,
// 3 confusion, 4 foreground mask.
fn report_ce_status(op: u32, row: u32, v: f32) {
    loop {
        let r = atomicCompareExchangeWeak(&ce_status[0], 0u, op);
        if r.exchanged {
            atomicStore(&ce_status[1], row);
            atomicStore(&ce_status[2], bitcast<u32>(v));
            break;
        }
        if r.old_value != 0u {
            break;
        }
    }
}
fn report_dp_status(op: u32, row: u32, v: f32) {
    loop {
        let r = atomicCompareExchangeWeak(&dp_status[0], 0u, op);
        if r.exchanged {
            atomicStore(&dp_status[1], row);
            atomicStore(&dp_status[2], bitcast<u32>(v));
            break;
        }
        if r.old_value != 0u {
            break;
        }
    }
}
fn report_fg_status(op: u32, row: u32, v: f32) {
    loop {
        let r = atomicCompareExchangeWeak(&fg_status[0], 0u, op);
        if r.exchanged {
            atomicStore(&fg_status[1], row);
            atomicStore(&fg_status[2], bitcast<u32>(v));
            break;
        }
        if r.old_value != 0u {
            break;
        }
    }
}
fn report_cm_status(op: u32, row: u32, v: f32) {
    loop {
        let r = atomicCompareExchangeWeak(&cm_status[0], 0u, op);
        if r.exchanged {
            atomicStore(&cm_status[1], row);
            atomicStore(&cm_status[2], bitcast<u32>(v));
            break;
        }
        if r.old_value != 0u {
            break;
        }
    }
}

// ---- softmax cross-entropy ------------------------------------------------------------------

struct Rows {
    classes: u32,
    ignore: u32,
    has_ignore: u32,
    has_class_weights: u32,
    has_pixel_weights: u32,
    gamma: f32,
}

@group(0) @binding(0) var<storage, read> ce_logits: array<f32>;
@group(0) @binding(1) var<storage, read> ce_labels: array<f32>;
@group(0) @binding(2) var<storage, read> ce_cw: array<f32>;
@group(0) @binding(3) var<storage, read> ce_pw: array<f32>;
@group(0) @binding(4) var<storage, read_write> ce_grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> ce_terms: array<f32>;
@group(0) @binding(6) var<storage, read_write> ce_status: array<atomic<u32>, 4>;
@group(0) @binding(7) var<uniform> CE: Rows;

// Per row: the unnormalised gradient a·g·(p − onehot) and the terms (a, a·loss).
@compute @workgroup_size(256)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = item(wid, nwg, lid);
    if row >= W.end {
        return;
    }
    let k = CE.classes;
    let start = row * k;
    let label = class_of(ce_labels[at(1u, row)], k, CE.ignore, CE.has_ignore);
    if label == -2 {
        report_ce_status(1u, row, ce_labels[at(1u, row)]);
    }
    if label < 0 {
        for (var j = 0u; j < k; j++) {
            ce_grad[at(4u, start + j)] = 0.0;
        }
        ce_terms[at(5u, 2u * row)] = 0.0;
        ce_terms[at(5u, 2u * row + 1u)] = 0.0;
        return;
    }
    let y = u32(label);
    var a = 1.0;
    if CE.has_class_weights == 1u {
        a = ce_cw[y];
    }
    if CE.has_pixel_weights == 1u {
        a = a * ce_pw[at(3u, row)];
    }
    var m = neg_inf();
    for (var j = 0u; j < k; j++) {
        m = max(m, ce_logits[at(0u, start + j)]);
    }
    var sum = 0.0;
    var rest = 0.0;
    for (var j = 0u; j < k; j++) {
        let e = exp(ce_logits[at(0u, start + j)] - m);
        sum += e;
        if j != y {
            rest += e;
        }
    }
    let lse = log(sum);
    let log_q = (ce_logits[at(0u, start + y)] - m) - lse;
    var l = -log_q;
    var g = 1.0;
    if CE.gamma != 0.0 {
        let q = exp(log_q);
        // 1 − q as the sum of the other probabilities: no cancellation when q is close to 1.
        let omq = rest / sum;
        var factor = 0.0;
        var ratio = -1.0;
        if omq > 0.0 {
            factor = pow(omq, CE.gamma);
            ratio = log_q / omq;
        }
        l = -factor * log_q;
        g = factor * (1.0 - CE.gamma * q * ratio);
    }
    ce_terms[at(5u, 2u * row)] = a;
    ce_terms[at(5u, 2u * row + 1u)] = a * l;
    let scale = a * g;
    for (var j = 0u; j < k; j++) {
        let p = exp(ce_logits[at(0u, start + j)] - m - lse);
        ce_grad[at(4u, start + j)] = scale * (p - select(0.0, 1.0, j == y));
    }
}

// ---- sums over rows -------------------------------------------------------------------------

struct Sums {
    width: u32,
}

@group(0) @binding(0) var<storage, read> cs_data: array<f32>;
@group(0) @binding(1) var<storage, read_write> cs_totals: array<f32>;
@group(0) @binding(2) var<uniform> CS: Sums;

var<workgroup> partial: array<f32, 256>;

// totals[c] = Σ_r data[r·width + c] over the rows of the dispatch, added to what the dispatches
// before it left; one workgroup per column.
@compute @workgroup_size(256)
fn column_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let c = group_index(wid, nwg);
    let live = c < CS.width;
    var s = 0.0;
    if live {
        for (var r = W.first + lid; r < W.end; r += WG) {
            s += cs_data[at(0u, r * CS.width + c)];
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if lid < h {
            partial[lid] += partial[lid + h];
        }
        workgroupBarrier();
    }
    if live && lid == 0u {
        cs_totals[c] = select(partial[0], cs_totals[c] + partial[0], W.first > 0u);
    }
}

// ---- finishing: scale the gradient, write the scalar loss ------------------------------------

struct Finish {
    n: u32,
    inv_n: f32,
}

@group(0) @binding(0) var<storage, read> fin_totals: array<f32>;
@group(0) @binding(1) var<storage, read_write> fin_grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> fin_loss: array<f32>;
@group(0) @binding(3) var<uniform> FIN: Finish;

@compute @workgroup_size(256)
fn loss_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if MODE == 0u {
        // Cross-entropy: divide by Σa; everything 0 when Σa = 0.
        let den = fin_totals[0];
        if i == 0u {
            fin_loss[0] = select(fin_totals[1] / den, 0.0, den == 0.0);
        }
        if i < W.end && i < FIN.n {
            fin_grad[at(1u, i)] = select(fin_grad[at(1u, i)] / den, 0.0, den == 0.0);
        }
    } else if i == 0u {
        fin_loss[0] = fin_totals[0] * FIN.inv_n;
    }
}

// ---- sigmoid binary cross-entropy -----------------------------------------------------------

struct Bce {
    has_pixel_weights: u32,
    pos_weight: f32,
    inv_n: f32,
}

@group(0) @binding(0) var<storage, read> bce_x: array<f32>;
@group(0) @binding(1) var<storage, read> bce_t: array<f32>;
@group(0) @binding(2) var<storage, read> bce_pw: array<f32>;
@group(0) @binding(3) var<storage, read_write> bce_grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> bce_terms: array<f32>;
@group(0) @binding(5) var<uniform> BCE: Bce;

// ln(1 + eˣ) without overflow.
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

fn sigmoid(v: f32) -> f32 {
    if v >= 0.0 {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

@compute @workgroup_size(256)
fn bce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let x = bce_x[at(0u, i)];
    let t = bce_t[at(1u, i)];
    var w = 1.0;
    if BCE.has_pixel_weights == 1u {
        w = bce_pw[at(2u, i)];
    }
    let pos = BCE.pos_weight;
    bce_terms[at(4u, i)] = w * (pos * t * softplus(-x) + (1.0 - t) * softplus(x));
    let s = sigmoid(x);
    bce_grad[at(3u, i)] = w * BCE.inv_n * ((1.0 - t) * s - pos * t * (1.0 - s));
}

// ---- soft Dice ------------------------------------------------------------------------------

struct Dice {
    images: u32,
    pixels: u32,
    classes: u32,
    ignore: u32,
    has_ignore: u32,
    first_class: u32,
    eps: f32,
    // 1 / (images · (classes − first_class))
    inv_terms: f32,
}

@group(0) @binding(0) var<storage, read> dp_logits: array<f32>;
@group(0) @binding(1) var<storage, read> dp_labels: array<f32>;
@group(0) @binding(2) var<storage, read_write> dp_probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> dp_status: array<atomic<u32>, 4>;
@group(0) @binding(4) var<uniform> DP: Dice;

// The softmax of every non-ignored row (0 for ignored rows).
@compute @workgroup_size(256)
fn dice_probs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = item(wid, nwg, lid);
    if row >= W.end {
        return;
    }
    let k = DP.classes;
    let start = row * k;
    let label = class_of(dp_labels[at(1u, row)], k, DP.ignore, DP.has_ignore);
    if label == -2 {
        report_dp_status(2u, row, dp_labels[at(1u, row)]);
    }
    if label < 0 {
        for (var j = 0u; j < k; j++) {
            dp_probs[at(2u, start + j)] = 0.0;
        }
        return;
    }
    var m = neg_inf();
    for (var j = 0u; j < k; j++) {
        m = max(m, dp_logits[at(0u, start + j)]);
    }
    var sum = 0.0;
    for (var j = 0u; j < k; j++) {
        sum += exp(dp_logits[at(0u, start + j)] - m);
    }
    let lse = log(sum);
    for (var j = 0u; j < k; j++) {
        dp_probs[at(2u, start + j)] = exp(dp_logits[at(0u, start + j)] - m - lse);
    }
}

@group(0) @binding(0) var<storage, read> ds_probs: array<f32>;
@group(0) @binding(1) var<storage, read> ds_labels: array<f32>;
@group(0) @binding(2) var<storage, read_write> ds_sums: array<f32>;
@group(0) @binding(3) var<uniform> DS: Dice;

var<workgroup> part_i: array<f32, 256>;
var<workgroup> part_p: array<f32, 256>;
var<workgroup> part_t: array<f32, 256>;

// sums[img, 0..3, c] = (Σ p_c·t_c, Σ p_c, Σ t_c) over the image; one workgroup per (img, c) of
// the images the dispatch's rows (pixels) meet, adding to the sums the dispatches before it left
// for an image that started there.
@compute @workgroup_size(256)
fn dice_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let w = group_index(wid, nwg);
    let k = DS.classes;
    let img = W.first / DS.pixels + w / k;
    let c = w % k;
    let first_row = img * DS.pixels;
    let live = first_row < W.end;
    var si = 0.0;
    var sp = 0.0;
    var st = 0.0;
    if live {
        let end = min(W.end, first_row + DS.pixels);
        for (var row = max(W.first, first_row) + lid; row < end; row += WG) {
            let p = ds_probs[at(0u, row * k + c)];
            sp += p;
            if class_of(ds_labels[at(1u, row)], k, DS.ignore, DS.has_ignore) == i32(c) {
                si += p;
                st += 1.0;
            }
        }
    }
    part_i[lid] = si;
    part_p[lid] = sp;
    part_t[lid] = st;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if lid < h {
            part_i[lid] += part_i[lid + h];
            part_p[lid] += part_p[lid + h];
            part_t[lid] += part_t[lid + h];
        }
        workgroupBarrier();
    }
    if live && lid == 0u {
        let o = (img * 3u) * k + c;
        if first_row < W.first {
            ds_sums[o] += part_i[0];
            ds_sums[o + k] += part_p[0];
            ds_sums[o + 2u * k] += part_t[0];
        } else {
            ds_sums[o] = part_i[0];
            ds_sums[o + k] = part_p[0];
            ds_sums[o + 2u * k] = part_t[0];
        }
    }
}

@group(0) @binding(0) var<storage, read> dc_sums: array<f32>;
@group(0) @binding(1) var<storage, read_write> dc_coef: array<f32>;
@group(0) @binding(2) var<storage, read_write> dc_loss: array<f32>;
@group(0) @binding(3) var<uniform> DC: Dice;

// Per image and class, dL/dp_c = −a_c·t_c + b_c with a = 2 / (K·S), b = (2I + ε) / (K·S²),
// S = Σp + Σt + ε (K the number of Dice terms); classes left out of the mean, and empty sums with
// ε = 0, get a = b = 0. One thread: there are few (image, class) pairs.
@compute @workgroup_size(1)
fn dice_coef() {
    let k = DC.classes;
    var total = 0.0;
    for (var img = 0u; img < DC.images; img++) {
        for (var c = 0u; c < k; c++) {
            let o = (img * k + c) * 2u;
            dc_coef[o] = 0.0;
            dc_coef[o + 1u] = 0.0;
            if c < DC.first_class {
                continue;
            }
            let inter = dc_sums[(img * 3u) * k + c];
            let psum = dc_sums[(img * 3u + 1u) * k + c];
            let tsum = dc_sums[(img * 3u + 2u) * k + c];
            let den = psum + tsum + DC.eps;
            if den == 0.0 {
                continue;
            }
            let num = 2.0 * inter + DC.eps;
            total += 1.0 - num / den;
            dc_coef[o] = 2.0 * DC.inv_terms / den;
            dc_coef[o + 1u] = num * DC.inv_terms / (den * den);
        }
    }
    dc_loss[0] = total * DC.inv_terms;
}

@group(0) @binding(0) var<storage, read> dg_labels: array<f32>;
@group(0) @binding(1) var<storage, read> dg_coef: array<f32>;
@group(0) @binding(2) var<storage, read_write> dg_grad: array<f32>;
@group(0) @binding(3) var<uniform> DG: Dice;

// Through the softmax: dz_j = p_j · (G_j − Σ_c p_c·G_c); `grad` holds p on entry.
@compute @workgroup_size(256)
fn dice_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = item(wid, nwg, lid);
    if row >= W.end {
        return;
    }
    let k = DG.classes;
    let start = row * k;
    let label = class_of(dg_labels[at(0u, row)], k, DG.ignore, DG.has_ignore);
    if label < 0 {
        return; // the probabilities of an ignored row are already 0
    }
    let cf = (row / DG.pixels) * k * 2u;
    var dot = 0.0;
    for (var j = 0u; j < k; j++) {
        let t = select(0.0, 1.0, i32(j) == label);
        let g = -dg_coef[cf + 2u * j] * t + dg_coef[cf + 2u * j + 1u];
        dot += dg_grad[at(2u, start + j)] * g;
    }
    for (var j = 0u; j < k; j++) {
        let t = select(0.0, 1.0, i32(j) == label);
        let g = -dg_coef[cf + 2u * j] * t + dg_coef[cf + 2u * j + 1u];
        dg_grad[at(2u, start + j)] = dg_grad[at(2u, start + j)] * (g - dot);
    }
}

// ---- foreground masks -----------------------------------------------------------------------

struct Fg {
    background: f32,
    ignore: f32,
    has_ignore: u32,
}

@group(0) @binding(0) var<storage, read> fg_labels: array<f32>;
@group(0) @binding(1) var<storage, read_write> fg_mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> fg_status: array<atomic<u32>, 4>;
@group(0) @binding(3) var<uniform> FG: Fg;

@compute @workgroup_size(256)
fn foreground(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let l = fg_labels[at(0u, i)];
    if !(l >= 0.0) || fract(l) != 0.0 {
        report_fg_status(4u, i, l);
    }
    let ignored = FG.has_ignore == 1u && l == FG.ignore;
    fg_mask[at(1u, i)] = select(0.0, 1.0, l != FG.background && !ignored);
}

// ---- distance transform ---------------------------------------------------------------------

struct Grid {
    height: u32,
    width: u32,
    empty: f32,
}

@group(0) @binding(0) var<storage, read> dt_mask: array<f32>;
@group(0) @binding(1) var<storage, read_write> dt_cols: array<f32>;
@group(0) @binding(2) var<uniform> DT: Grid;

// Pass 1, one thread per column: squared distance to the column's nearest foreground pixel, or
// −1 where the column has none (infinite).
@compute @workgroup_size(256)
fn dt_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let col = item(wid, nwg, lid);
    if col >= W.end {
        return;
    }
    let b = col / DT.width;
    let x = col % DT.width;
    let h = DT.height;
    let w = DT.width;
    // Downwards: distance to the nearest foreground above (or at) each pixel.
    var last = -1;
    for (var y = 0u; y < h; y++) {
        let i = (b * h + y) * w + x;
        if dt_mask[at(0u, i)] > 0.5 {
            last = i32(y);
        }
        if last >= 0 {
            let d = f32(i32(y) - last);
            dt_cols[at(1u, i)] = d * d;
        } else {
            dt_cols[at(1u, i)] = -1.0;
        }
    }
    // Upwards: the nearest foreground below, if closer.
    last = -1;
    for (var yy = i32(h) - 1; yy >= 0; yy--) {
        let i = (b * h + u32(yy)) * w + x;
        if dt_mask[at(0u, i)] > 0.5 {
            last = yy;
        }
        if last >= 0 {
            let d = f32(last - yy);
            let cur = dt_cols[at(1u, i)];
            if cur < 0.0 || d * d < cur {
                dt_cols[at(1u, i)] = d * d;
            }
        }
    }
}

@group(0) @binding(0) var<storage, read> dr_cols: array<f32>;
@group(0) @binding(1) var<storage, read_write> dr_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> dr_sites: array<u32>;
@group(0) @binding(3) var<storage, read_write> dr_bounds: array<f32>;
@group(0) @binding(4) var<uniform> DR: Grid;

// Pass 2, one thread per row: the lower envelope of the parabolas (x − v)² + f[v] over the
// column results (Felzenszwalb & Huttenlocher), with the row's scratch in `sites` / `bounds`.
@compute @workgroup_size(256)
fn dt_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = item(wid, nwg, lid);
    if row >= W.end {
        return;
    }
    let w = DR.width;
    let base = row * w;
    var n = 0u;
    for (var q = 0u; q < w; q++) {
        let fq = dr_cols[at(0u, base + q)];
        if fq < 0.0 {
            continue;
        }
        let height = fq + f32(q * q);
        var start = neg_inf();
        loop {
            if n == 0u {
                start = neg_inf();
                break;
            }
            let v = dr_sites[at(2u, base + n - 1u)];
            let s = (height - (dr_cols[at(0u, base + v)] + f32(v * v))) / (2.0 * f32(q - v));
            if s <= dr_bounds[at(3u, base + n - 1u)] {
                n -= 1u;
            } else {
                start = s;
                break;
            }
        }
        dr_sites[at(2u, base + n)] = q;
        dr_bounds[at(3u, base + n)] = start;
        n += 1u;
    }
    if n == 0u {
        // No finite site in a row means no foreground in the whole image.
        for (var q = 0u; q < w; q++) {
            dr_out[at(1u, base + q)] = DR.empty;
        }
        return;
    }
    var k = 0u;
    for (var q = 0u; q < w; q++) {
        while k + 1u < n && dr_bounds[at(3u, base + k + 1u)] < f32(q) {
            k += 1u;
        }
        let v = dr_sites[at(2u, base + k)];
        let d = f32(q) - f32(v);
        dr_out[at(1u, base + q)] = sqrt(d * d + dr_cols[at(0u, base + v)]);
    }
}

// ---- confusion counts -----------------------------------------------------------------------

struct Confusion {
    pixels: u32,
    classes: u32,
    ignore: u32,
    has_ignore: u32,
}

@group(0) @binding(0) var<storage, read> cm_logits: array<f32>;
@group(0) @binding(1) var<storage, read> cm_labels: array<f32>;
@group(0) @binding(2) var<storage, read_write> cm_acc: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> cm_status: array<atomic<u32>, 4>;
@group(0) @binding(4) var<uniform> CM: Confusion;

@compute @workgroup_size(256)
fn confusion_count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = item(wid, nwg, lid);
    if row >= W.end {
        return;
    }
    let k = CM.classes;
    let t = class_of(cm_labels[at(1u, row)], k, CM.ignore, CM.has_ignore);
    if t == -2 {
        report_cm_status(3u, row, cm_labels[at(1u, row)]);
    }
    if t < 0 {
        return;
    }
    let start = row * k;
    // The first maximum wins ties.
    var best = 0u;
    for (var j = 1u; j < k; j++) {
        if cm_logits[at(0u, start + j)] > cm_logits[at(0u, start + best)] {
            best = j;
        }
    }
    let img = row / CM.pixels;
    atomicAdd(&cm_acc[(img * k + u32(t)) * k + best], 1u);
}

@group(0) @binding(0) var<storage, read> cs_acc: array<u32>;
@group(0) @binding(1) var<storage, read_write> cs_counts: array<f32>;

@compute @workgroup_size(256)
fn confusion_store(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i < W.end {
        cs_counts[at(1u, i)] = f32(cs_acc[at(0u, i)]);
    }
}
