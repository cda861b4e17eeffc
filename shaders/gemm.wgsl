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
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

const TILE: u32 = 64u;
const KT: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [KT][TILE]
var<workgroup> Bs: array<f32, 1024>; // [KT][TILE]

// Element (p, kk) of the im2col matrix of input `src` (x, read through binding `a` or `b`).
fn im2col_index(p: u32, kk: u32) -> i32 {
    let ci = kk % P.cin;
    let tap = kk / P.cin;
    let kx = tap % P.kw;
    let ky = tap / P.kw;
    let ox = p % P.out_w;
    let t = p / P.out_w;
    let oy = t % P.out_h;
    let n = t / P.out_h;
    let iy = i32(oy * P.sh + ky * P.dh) - i32(P.ph);
    let ix = i32(ox * P.sw + kx * P.dw) - i32(P.pw);
    if iy < 0 || ix < 0 || iy >= i32(P.in_h) || ix >= i32(P.in_w) {
        return -1;
    }
    return ((i32(n) * i32(P.in_h) + iy) * i32(P.in_w) + ix) * i32(P.cin) + i32(ci);
}

fn load_a(row: u32, kk: u32) -> f32 {
    if row >= P.m || kk >= P.k {
        return 0.0;
    }
    switch MODE {
        case 0u: {
            if TRANS_A == 1u {
                return a[kk * P.m + row];
            }
            return a[row * P.k + kk];
        }
        case 1u: {
            let i = im2col_index(row, kk);
            if i < 0 {
                return 0.0;
            }
            return a[u32(i)];
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
            return a[((n * P.out_h + oy) * P.out_w + ox) * P.cout + co];
        }
        default: {
            // A[co, p] = dy[p, co]
            return a[kk * P.cout + row];
        }
    }
}

fn load_b(kk: u32, col: u32) -> f32 {
    if kk >= P.k || col >= P.n {
        return 0.0;
    }
    switch MODE {
        case 0u: {
            if TRANS_B == 1u {
                return b[col * P.k + kk];
            }
            return b[kk * P.n + col];
        }
        case 1u: {
            return b[col * P.k + kk];
        }
        case 2u: {
            // kk = (ky, kx, co), col = ci: w[co, ky, kx, ci]
            let co = kk % P.cout;
            let tap = kk / P.cout;
            return b[(co * P.kh * P.kw + tap) * P.cin + col];
        }
        default: {
            let i = im2col_index(kk, col);
            if i < 0 {
                return 0.0;
            }
            return b[u32(i)];
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tx = lid3.x;
    let ty = lid3.y;
    let col0 = wid.x * TILE;
    let row0 = (wid.y + wid.z * nwg.y) * TILE;
    // Row i of the thread's block, columns tx + 16·j in lane j.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let ktiles = (P.k + KT - 1u) / KT;
    for (var t = 0u; t < ktiles; t++) {
        let k0 = t * KT;
        for (var e = 0u; e < 4u; e++) {
            let idx = lid + e * 256u;
            // A tile: 64 rows × 16 k, consecutive threads along k.
            let ar = idx / KT;
            let ak = idx % KT;
            As[ak * TILE + ar] = load_a(row0 + ar, k0 + ak);
            // B tile: 16 k × 64 columns, consecutive threads along the columns.
            let bk = idx / TILE;
            let bc = idx % TILE;
            Bs[bk * TILE + bc] = load_b(k0 + bk, col0 + bc);
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
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + ty + 16u * i;
        if row >= P.m {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + tx + 16u * j;
            if col >= P.n {
                continue;
            }
            let o = row * P.n + col;
            var v = P.alpha * acc[i][j];
            if P.beta != 0.0 {
                v += P.beta * c[o];
            }
            c[o] = v;
        }
    }
}
