// 2-D max pooling over NHWC tensors. Padding counts as -inf, so only the part of a window inside
// the input is visited; windows are scanned row-major and a value replaces the running maximum
// only when strictly greater (or NaN), so ties go to the first maximum, as in PyTorch. The
// backward pass is a gather: each input element recomputes the argmax of the windows containing
// it and collects the gradients of those that chose it (no atomics, no races).
//
// Split by rows of the output (forward) or of the input (backward): W.first .. W.end are the
// elements of the dispatch, and every array is windowed over the rows those elements read.

struct Params {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
}

// [start, end) of output position o's window along an axis, clipped to the input.
fn window(o: u32, k: u32, s: u32, p: u32, size: u32) -> vec2<u32> {
    let lo = o * s;
    let start = select(0u, lo - p, lo >= p);
    let hi = lo + k;
    let end = min(select(0u, hi - p, hi >= p), size);
    return vec2<u32>(start, end);
}

// The output positions whose windows contain input position i along an axis.
fn containing(i: u32, k: u32, s: u32, p: u32, out: u32) -> vec2<u32> {
    let a = i + p + 1u;
    let lo = (select(0u, a - k, a >= k) + s - 1u) / s;
    let hi = min((i + p) / s + 1u, out);
    return vec2<u32>(lo, max(hi, lo));
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(256)
fn max_pool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let c = i % P.channels;
    let t = i / P.channels;
    let ow = t % P.out_w;
    let t2 = t / P.out_w;
    let oh = t2 % P.out_h;
    let n = t2 / P.out_h;
    let hs = window(oh, P.kh, P.sh, P.ph, P.in_h);
    let ws = window(ow, P.kw, P.sw, P.pw, P.in_w);
    var m = bitcast<f32>(0xff800000u);
    for (var ih = hs.x; ih < hs.y; ih++) {
        for (var iw = ws.x; iw < ws.y; iw++) {
            let v = x[at(0u, ((n * P.in_h + ih) * P.in_w + iw) * P.channels + c)];
            if v > m || v != v {
                m = v;
            }
        }
    }
    y[at(1u, i)] = m;
}

@group(0) @binding(0) var<storage, read> bx: array<f32>;
@group(0) @binding(1) var<storage, read> bdy: array<f32>;
@group(0) @binding(2) var<storage, read_write> bdx: array<f32>;
@group(0) @binding(3) var<uniform> B: Params;

@compute @workgroup_size(256)
fn max_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let c = i % B.channels;
    let t = i / B.channels;
    let iw = t % B.in_w;
    let t2 = t / B.in_w;
    let ih = t2 % B.in_h;
    let n = t2 / B.in_h;
    let me = ih * B.in_w + iw;
    let ohs = containing(ih, B.kh, B.sh, B.ph, B.out_h);
    let ows = containing(iw, B.kw, B.sw, B.pw, B.out_w);
    var d = 0.0;
    for (var oh = ohs.x; oh < ohs.y; oh++) {
        let hs = window(oh, B.kh, B.sh, B.ph, B.in_h);
        for (var ow = ows.x; ow < ows.y; ow++) {
            let ws = window(ow, B.kw, B.sw, B.pw, B.in_w);
            // The first pixel inside the input wins when every value is -inf.
            var m = bitcast<f32>(0xff800000u);
            var arg = hs.x * B.in_w + ws.x;
            for (var y = hs.x; y < hs.y; y++) {
                for (var x = ws.x; x < ws.y; x++) {
                    let pix = y * B.in_w + x;
                    let v = bx[at(0u, (n * B.in_h * B.in_w + pix) * B.channels + c)];
                    if v > m || v != v {
                        m = v;
                        arg = pix;
                    }
                }
            }
            if arg == me {
                d += bdy[at(1u, ((n * B.out_h + oh) * B.out_w + ow) * B.channels + c)];
            }
        }
    }
    bdx[at(2u, i)] = d;
}
