// Bilinear resampling of NHWC tensors with PyTorch's source-index rules. The two source taps and
// weights of every output row and column are computed on the host (in f32, as the CPU backend
// and PyTorch do) and read from a table, so the arithmetic matches the CPU term for term. The
// backward pass is a gather over per-input lists of (output, weight) readers.
//
// Split by rows of the output (forward) or of the input (backward): W.first .. W.end are the
// elements of the dispatch; the tensors are windowed over the rows those elements read, the
// tables are bound whole.

struct Params {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    // forward: offset of the column taps (4 words per output column) after the row taps
    // backward: offsets of the row lists, row entries, column lists, column entries
    o0: u32,
    o1: u32,
    o2: u32,
    o3: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> taps: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(256)
fn upsample_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    let h = oh * 4u;
    let w = P.o0 + ow * 4u;
    let hl0 = bitcast<f32>(taps[h + 2u]);
    let hl1 = bitcast<f32>(taps[h + 3u]);
    let wl0 = bitcast<f32>(taps[w + 2u]);
    let wl1 = bitcast<f32>(taps[w + 3u]);
    let r0 = (n * P.in_h + taps[h]) * P.in_w;
    let r1 = (n * P.in_h + taps[h + 1u]) * P.in_w;
    let a0 = x[at(0u, (r0 + taps[w]) * P.channels + c)];
    let a1 = x[at(0u, (r0 + taps[w + 1u]) * P.channels + c)];
    let b0 = x[at(0u, (r1 + taps[w]) * P.channels + c)];
    let b1 = x[at(0u, (r1 + taps[w + 1u]) * P.channels + c)];
    y[at(2u, i)] = hl0 * (wl0 * a0 + wl1 * a1) + hl1 * (wl0 * b0 + wl1 * b1);
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> readers: array<u32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> B: Params;

@compute @workgroup_size(256)
fn upsample_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    var d = 0.0;
    for (var a = readers[B.o0 + ih]; a < readers[B.o0 + ih + 1u]; a++) {
        let oh = readers[B.o1 + 2u * a];
        let wh = bitcast<f32>(readers[B.o1 + 2u * a + 1u]);
        let row = (n * B.out_h + oh) * B.out_w;
        for (var b = readers[B.o2 + iw]; b < readers[B.o2 + iw + 1u]; b++) {
            let ow = readers[B.o3 + 2u * b];
            let ww = bitcast<f32>(readers[B.o3 + 2u * b + 1u]);
            d += (wh * ww) * dy[at(0u, (row + ow) * B.channels + c)];
        }
    }
    dx[at(2u, i)] = d;
}
