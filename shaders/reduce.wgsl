// Reductions (sum, mean, max) over the axes where the output has size 1, and softmax /
// log-softmax over the last axis of a rows × cols matrix with their gradients.
//
// A reduction dispatch computes the outputs W.first .. W.end over the reduced elements
// r_first .. r_end of each (a slab of x, which is windowed, as is y); a dispatch that does not
// start at the first reduced element combines with what the dispatches before it left in y, and
// the mean divides in the one that ends at the last. Softmax is split by rows (W.first ..
// W.end).

// 0 sum, 1 mean, 2 max.
override OP: u32 = 0u;
// Softmax: 1 for log-softmax.
override LOG: u32 = 0u;

const RWG: u32 = 64u;

// The input's axes after merging, split into kept axes (whose index is the output index) and
// reduced axes, each outermost first with its element stride in the input; at most 4 of each.
struct Groups {
    // reduced elements per output
    n_red: u32,
    r_first: u32,
    r_end: u32,
    kept_rank: u32,
    red_rank: u32,
    inv_count: f32,
    pad0: u32,
    pad1: u32,
    kept_dims: vec4<u32>,
    kept_strides: vec4<u32>,
    red_dims: vec4<u32>,
    red_strides: vec4<u32>,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> P: Groups;

var<workgroup> partial: array<f32, 64>;

fn combine(a: f32, b: f32) -> f32 {
    if OP == 2u {
        // max that propagates NaN
        return select(a, b, b > a || b != b);
    }
    return a + b;
}

// One workgroup per output element; its threads stride over the reduced elements.
@compute @workgroup_size(64)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let o = W.first + group_index(wid, nwg);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    let live = o < W.end;
    var base = 0u;
    var rest = o;
    for (var d = i32(P.kept_rank) - 1; d >= 0; d--) {
        let size = P.kept_dims[d];
        base += (rest % size) * P.kept_strides[d];
        rest = rest / size;
    }
    var acc = select(0.0, bitcast<f32>(0xff800000u), OP == 2u);
    if live {
        for (var r = P.r_first + lid; r < P.r_end; r += RWG) {
            var off = base;
            var q = r;
            for (var d = i32(P.red_rank) - 1; d >= 0; d--) {
                let size = P.red_dims[d];
                off += (q % size) * P.red_strides[d];
                q = q / size;
            }
            acc = combine(acc, x[at(0u, off)]);
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = RWG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            partial[lid] = combine(partial[lid], partial[lid + s]);
        }
        workgroupBarrier();
    }
    if live && lid == 0u {
        var v = partial[0];
        if P.r_first > 0u {
            v = combine(y[at(1u, o)], v);
        }
        if OP == 1u && P.r_end == P.n_red {
            v = v * P.inv_count;
        }
        y[at(1u, o)] = v;
    }
}

// ---- softmax --------------------------------------------------------------------------------

struct Matrix {
    cols: u32,
}

@group(0) @binding(0) var<storage, read> sx: array<f32>;
@group(0) @binding(1) var<storage, read_write> sy: array<f32>;
@group(0) @binding(2) var<uniform> M: Matrix;

// One thread per row.
@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = item(wid, nwg, lid);
    if row >= W.end {
        return;
    }
    let start = row * M.cols;
    var m = bitcast<f32>(0xff800000u);
    for (var j = 0u; j < M.cols; j++) {
        let v = sx[at(0u, start + j)];
        m = select(m, v, v > m || v != v);
    }
    var sum = 0.0;
    for (var j = 0u; j < M.cols; j++) {
        let e = exp(sx[at(0u, start + j)] - m);
        sy[at(1u, start + j)] = e;
        sum += e;
    }
    if LOG == 1u {
        // (x − max) − log Σ: the shifted value is exact.
        let ls = log(sum);
        for (var j = 0u; j < M.cols; j++) {
            sy[at(1u, start + j)] = (sx[at(0u, start + j)] - m) - ls;
        }
    } else {
        for (var j = 0u; j < M.cols; j++) {
            sy[at(1u, start + j)] = sy[at(1u, start + j)] / sum;
        }
    }
}

@group(0) @binding(0) var<storage, read> by: array<f32>;
@group(0) @binding(1) var<storage, read> bdy: array<f32>;
@group(0) @binding(2) var<storage, read_write> bdx: array<f32>;
@group(0) @binding(3) var<uniform> N: Matrix;

@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = item(wid, nwg, lid);
    if row >= W.end {
        return;
    }
    let start = row * N.cols;
    var s = 0.0;
    if LOG == 1u {
        // dx = dy − softmax · Σ dy
        for (var j = 0u; j < N.cols; j++) {
            s += bdy[at(1u, start + j)];
        }
        for (var j = 0u; j < N.cols; j++) {
            bdx[at(2u, start + j)] = bdy[at(1u, start + j)] - exp(by[at(0u, start + j)]) * s;
        }
    } else {
        // dx = y · (dy − Σ dy·y)
        for (var j = 0u; j < N.cols; j++) {
            s += by[at(0u, start + j)] * bdy[at(1u, start + j)];
        }
        for (var j = 0u; j < N.cols; j++) {
            bdx[at(2u, start + j)] = by[at(0u, start + j)] * (bdy[at(1u, start + j)] - s);
        }
    }
}
