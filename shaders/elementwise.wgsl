// Elementwise maps and their gradients, broadcasting binary maps, fill, axpy and seeded dropout.
//
// One thread per output element, split by elements: W.first .. W.end are the elements of the
// dispatch. Each entry point binds its inputs read-only from binding 0 on, then its outputs
// read-write, then the uniform block `P`; every array is windowed.

// UnaryOp / BinaryOp code, fixed per pipeline.
override OP: u32 = 0u;

// ---- unary, axpy, fill, dropout -----------------------------------------------------------

struct Scalars {
    // scale (affine), alpha (axpy), value (fill), p (dropout)
    a: f32,
    // shift (affine), 1 / (1 - p) (dropout)
    b: f32,
    // dropout key
    key: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> S: Scalars;

// Overflow-free logistic sigmoid: exp only sees non-positive arguments.
fn sigmoid(v: f32) -> f32 {
    if v >= 0.0 {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

fn unary_f(v: f32) -> f32 {
    switch OP {
        case 0u: { return select(0.0, v, v > 0.0); }
        case 1u: { return sigmoid(v); }
        // tanh(±15) is ±1 in f32; clamping keeps exp-based implementations from overflowing.
        case 2u: { return tanh(clamp(v, -15.0, 15.0)); }
        case 3u: { return exp(v); }
        case 4u: { return log(v); }
        case 5u: { return -v; }
        case 6u: { return abs(v); }
        case 7u: { return sqrt(v); }
        case 8u: { return v * v; }
        default: { return S.a * v + S.b; }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i < W.end {
        y[at(1u, i)] = unary_f(x[at(0u, i)]);
    }
}

@compute @workgroup_size(256)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i < W.end {
        y[at(1u, i)] = y[at(1u, i)] + S.a * x[at(0u, i)];
    }
}

// The "lowbias32" hash and the keyed uniform of src/backend/rng.rs, bit for bit.
fn hash32(v: u32) -> u32 {
    var h = v;
    h = h ^ (h >> 16u);
    h = h * 0x7feb352du;
    h = h ^ (h >> 15u);
    h = h * 0x846ca68bu;
    h = h ^ (h >> 16u);
    return h;
}

fn uniform_keyed(key: u32, index: u32) -> f32 {
    let rot = (index << 16u) | (index >> 16u);
    let bits = hash32(index ^ hash32(key + rot));
    return f32(bits >> 8u) * (1.0 / 16777216.0);
}

@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i < W.end {
        // The mask is indexed by the global element: the same whatever the split.
        let keep = uniform_keyed(S.key, i) >= S.a;
        y[at(1u, i)] = select(0.0, x[at(0u, i)] * S.b, keep);
    }
}

@group(0) @binding(0) var<storage, read_write> fill_y: array<f32>;
@group(0) @binding(1) var<uniform> F: Scalars;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i < W.end {
        fill_y[at(0u, i)] = F.a;
    }
}

// ---- unary backward -------------------------------------------------------------------------

// `gs` is the forward's output y, or its input x for log, abs and square
// (UnaryOp::backward_from_output); ReLU's y > 0 is x > 0.
@group(0) @binding(0) var<storage, read> gs: array<f32>;
@group(0) @binding(1) var<storage, read> gdy: array<f32>;
@group(0) @binding(2) var<storage, read_write> gdx: array<f32>;
@group(0) @binding(3) var<uniform> G: Scalars;

fn unary_grad(v: f32, g: f32) -> f32 {
    switch OP {
        case 0u: { return select(0.0, g, v > 0.0); }
        case 1u: { return g * v * (1.0 - v); }
        case 2u: { return g * (1.0 - v * v); }
        case 3u: { return g * v; }
        case 4u: { return g / v; }
        case 5u: { return -g; }
        case 6u: {
            if v > 0.0 { return g; }
            if v < 0.0 { return -g; }
            return 0.0;
        }
        case 7u: { return g * 0.5 / v; }
        case 8u: { return g * 2.0 * v; }
        default: { return g * G.a; }
    }
}

@compute @workgroup_size(256)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i < W.end {
        gdx[at(2u, i)] = unary_grad(gs[at(0u, i)], gdy[at(1u, i)]);
    }
}

// ---- broadcasting ---------------------------------------------------------------------------

// The output's collapsed axes (outermost first) with the element strides of each operand along
// them (0 where the operand is broadcast); at most 8 axes. Operand windows cover what the
// dispatch's output elements read (the host bounds it from the same strides).
struct Strided {
    rank: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    dims: array<vec4<u32>, 2>,
    sa: array<vec4<u32>, 2>,
    sb: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> ba: array<f32>;
@group(0) @binding(1) var<storage, read> bb: array<f32>;
@group(0) @binding(2) var<storage, read_write> by: array<f32>;
@group(0) @binding(3) var<uniform> B: Strided;

fn binary_f(a: f32, b: f32) -> f32 {
    switch OP {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        default: { return a / b; }
    }
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    var rest = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(B.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = B.dims[k / 4u][k % 4u];
        let c = rest % size;
        rest = rest / size;
        ia += c * B.sa[k / 4u][k % 4u];
        ib += c * B.sb[k / 4u][k % 4u];
    }
    by[at(2u, i)] = binary_f(ba[at(0u, ia)], bb[at(1u, ib)]);
}

@group(0) @binding(0) var<storage, read> rx: array<f32>;
@group(0) @binding(1) var<storage, read_write> ry: array<f32>;
@group(0) @binding(2) var<uniform> R: Strided;

// y = x repeated along its broadcast axes (strides `sa`).
@compute @workgroup_size(256)
fn broadcast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    var rest = i;
    var ia = 0u;
    for (var d = i32(R.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = R.dims[k / 4u][k % 4u];
        ia += (rest % size) * R.sa[k / 4u][k % 4u];
        rest = rest / size;
    }
    ry[at(1u, i)] = rx[at(0u, ia)];
}
