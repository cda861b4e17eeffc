// Tiled, register-blocked GEMM `C[M, N] = alpha · A[M, K] · B[K, N] + beta · C`, and the three
// convolutions as implicit GEMMs whose operands are gathered from NHWC tensors on the fly (the
// column matrix is never stored).
//
// A workgroup of 16 × 16 threads computes a 64 × 64 tile of C, each thread a 4 × 4 block (rows
// ty + 16·i, columns tx + 16·j); K is walked in slices of 16 staged in workgroup memory.
//
// MODE (fixed per pipeline) says where A and B come from:
// 0 plain GEMM      A = a (m × k, or k × m when TRANS_A), B = b (k × n, or n × k when TRANS_B)
// 1 conv forward    A[p, (ky, kx, ci)] = x[n, oy·sh + ky·dh − ph, ox·sw + kx·dw − pw, ci] (im2col)
//                   B[(ky, kx, ci), co] = w[co, ky, kx, ci];               C = y [P, out]
// 2 backward-data   A[(n, iy, ix), (ky, kx, co)] = dy[n, oy, ox, co] where oy·sh = iy + ph − ky·dh
//                   (0 when that is not an output row; likewise ox), B[(ky, kx, co), ci] =
//                   w[co, ky, kx, ci];                                     C = dx [pixels, in]
// 3 backward-filter A[co, p] = dy[p, co], B[p, (ky, kx, ci)] = im2col(x);   C = dw [out, K]
//
// A dispatch computes the rows W.first .. W.end of C, or, when `split_k` is set, adds the
// products over the depth W.first .. W.end to C (beta applies in the dispatch that starts at
// depth 0). Operands are windowed over what those rows or that depth read; the host binds
// whole an operand whose part is not contiguous (the weights, a transposed A).
//
// When those rows have too few tiles for their depth (backward-filter: a 64 × 576 dW over a
// depth of N·H·W), the depth is cut into `parts` slices, one per layer of workgroups: each writes
// its partial tile to a scratch [parts, rows, n] bound at `c`, and `gemm_sum` adds the parts in
// order into C (no float atomics: the same sum on every run).

override MODE: u32 = 0u;
override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
    beta: f32,
    batch: u32,
    in_h: u32,
    in_w: u32,
    cin: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    out_h: u32,
    out_w: u32,
    split_k: u32,
    parts: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

const TILE: u32 = 64u;
const KT: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [KT][TILE]
var<workgroup> Bs: array<f32, 1024>; // [KT][TILE]

// What `im2col_index` returns in the padding (no element index: tensors hold fewer than 2^32).
const PADDING: u32 = 0xffffffffu;

// The index in x of element (p, kk) of the im2col matrix (x read through binding `a` or `b`),
// in 32-bit unsigned arithmetic like every element index, or PADDING.
fn im2col_index(p: u32, kk: u32) -> u32 {
    let ci = kk % P.cin;
    let tap = kk / P.cin;
    let kx = tap % P.kw;
    let ky = tap / P.kw;
    let ox = p % P.out_w;
    let t = p / P.out_w;
    let oy = t % P.out_h;
    let n = t / P.out_h;
    // Row and column in the padded input.
    let py = oy * P.sh + ky * P.dh;
    let px = ox * P.sw + kx * P.dw;
    if py < P.ph || px < P.pw || py - P.ph >= P.in_h || px - P.pw >= P.in_w {
        return PADDING;
    }
    return ((n * P.in_h + py - P.ph) * P.in_w + px - P.pw) * P.cin + ci;
}

// `end`: the ends of the dispatch's rows and depth.
fn load_a(row: u32, kk: u32, end: vec2<u32>) -> f32 {
    if row >= end.x || kk >= end.y {
        return 0.0;
    }
    switch MODE {
        case 0u: {
            if TRANS_A == 1u {
                return a[at(0u, kk * P.m + row)];
            }
            return a[at(0u, row * P.k + kk)];
        }
        case 1u: {
            let i = im2col_index(row, kk);
            if i == PADDING {
                return 0.0;
            }
            return a[at(0u, i)];
        }
        case 2u: {
            // row = input pixel (n, iy, ix); kk = (ky, kx, co)
            let co = kk % P.cout;
            let tap = kk / P.cout;
            let kx = tap % P.kw;
            let ky = tap / P.kw;
            let ix = row % P.in_w;
            let t = row / P.in_w;
            let iy = t % P.in_h;
            let n = t / P.in_h;
            let ny = i32(iy + P.ph) - i32(ky * P.dh);
            let nx = i32(ix + P.pw) - i32(kx * P.dw);
            if ny < 0 || nx < 0 {
                return 0.0;
            }
            let uy = u32(ny);
            let ux = u32(nx);
            if uy % P.sh != 0u || ux % P.sw != 0u {
                return 0.0;
            }
            let oy = uy / P.sh;
            let ox = ux / P.sw;
            if oy >= P.out_h || ox >= P.out_w {
                return 0.0;
            }
            return a[at(0u, ((n * P.out_h + oy) * P.out_w + ox) * P.cout + co)];
        }
        default: {
            // A[co, p] = dy[p, co]
            return a[at(0u, kk * P.cout + row)];
        }
    }
}

fn load_b(kk: u32, col: u32, end: vec2<u32>) -> f32 {
    if kk >= end.y || col >= P.n {
        return 0.0;
    }
    switch MODE {
        case 0u: {
            if TRANS_B == 1u {
                return b[at(1u, col * P.k + kk)];
            }
            return b[at(1u, kk * P.n + col)];
        }
        case 1u: {
            return b[at(1u, col * P.k + kk)];
        }
        case 2u: {
            // kk = (ky, kx, co), col = ci: w[co, ky, kx, ci]
            let co = kk % P.cout;
            let tap = kk / P.cout;
            return b[at(1u, (co * P.kh * P.kw + tap) * P.cin + col)];
        }
        default: {
            let i = im2col_index(kk, col);
            if i == PADDING {
                return 0.0;
            }
            return b[at(1u, i)];
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tx = lid3.x;
    let ty = lid3.y;
    let split_k = P.split_k == 1u;
    let first = select(vec2<u32>(W.first, 0u), vec2<u32>(0u, W.first), split_k);
    let end = select(vec2<u32>(min(W.end, P.m), P.k), vec2<u32>(P.m, min(W.end, P.k)), split_k);
    // Tiles numbered along the columns first, then the parts of the depth.
    let rows = end.x - first.x;
    let col_tiles = (P.n + TILE - 1u) / TILE;
    let tiles = col_tiles * ((rows + TILE - 1u) / TILE);
    let t = group_index(wid, nwg);
    let part = t / tiles;
    // Uniform per workgroup: a folded grid's spare workgroups leave before any barrier.
    if part >= P.parts {
        return;
    }
    let col0 = (t % tiles % col_tiles) * TILE;
    let row0 = first.x + (t % tiles / col_tiles) * TILE;
    // The part's slice of the depth, in whole steps of KT.
    let depth = end.y - first.y;
    let share = ((depth + P.parts - 1u) / P.parts + KT - 1u) / KT * KT;
    let k_first = first.y + min(part * share, depth);
    let lim = vec2<u32>(end.x, min(k_first + share, end.y));
    // An A stored depth-major (dy in backward-filter, a transposed A) is read along its rows,
    // so that neighbouring threads read neighbouring elements.
    let a_by_rows = MODE == 3u || TRANS_A == 1u;
    // Row i of the thread's block, columns tx + 16·j in lane j.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let ktiles = (lim.y - k_first + KT - 1u) / KT;
    for (var kt = 0u; kt < ktiles; kt++) {
        let k0 = k_first + kt * KT;
        for (var e = 0u; e < 4u; e++) {
            let idx = lid + e * 256u;
            // A tile: 64 rows × 16 k.
            let ar = select(idx / KT, idx % TILE, a_by_rows);
            let ak = select(idx % KT, idx / TILE, a_by_rows);
            As[ak * TILE + ar] = load_a(row0 + ar, k0 + ak, lim);
            // B tile: 16 k × 64 columns, consecutive threads along the columns.
            let bk = idx / TILE;
            let bc = idx % TILE;
            Bs[bk * TILE + bc] = load_b(k0 + bk, col0 + bc, lim);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let ao = kk * TILE + ty;
            let bo = kk * TILE + tx;
            let bv = vec4<f32>(Bs[bo], Bs[bo + 16u], Bs[bo + 32u], Bs[bo + 48u]);
            acc0 += As[ao] * bv;
            acc1 += As[ao + 16u] * bv;
            acc2 += As[ao + 32u] * bv;
            acc3 += As[ao + 48u] * bv;
        }
        workgroupBarrier();
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    // Later parts of the depth add to what the earlier ones left in C.
    let beta = select(P.beta, 1.0, split_k && W.first > 0u);
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + ty + 16u * i;
        if row >= end.x {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + tx + 16u * j;
            if col >= P.n {
                continue;
            }
            if P.parts > 1u {
                // The scratch, bound whole: alpha and beta apply in `gemm_sum`.
                c[((part * rows) + row - first.x) * P.n + col] = acc[i][j];
                continue;
            }
            let o = at(2u, row * P.n + col);
            var v = P.alpha * acc[i][j];
            if beta != 0.0 {
                v += beta * c[o];
            }
            c[o] = v;
        }
    }
}

// ---- C = alpha · Σ parts + beta · C ------------------------------------------------------

struct Sum {
    // Elements of C one part holds (the dispatch's rows × n).
    len: u32,
    parts: u32,
    // C's element that the parts' first element belongs to.
    base: u32,
    alpha: f32,
    beta: f32,
}

// The parts [parts, len], bound whole.
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> sum_c: array<f32>;
@group(0) @binding(2) var<uniform> S: Sum;

// One thread per element W.first .. W.end of a part; the parts are added in order.
@compute @workgroup_size(256)
fn gemm_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    var total = 0.0;
    for (var p = 0u; p < S.parts; p++) {
        total += partial[p * S.len + i];
    }
    let o = at(1u, S.base + i);
    var v = S.alpha * total;
    if S.beta != 0.0 {
        v += S.beta * sum_c[o];
    }
    sum_c[o] = v;
}
