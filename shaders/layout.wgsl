// Concatenation and split along the last axis (the channels of NHWC), one part per dispatch:
// part element (r, j) is whole element (r, offset + j). Split by rows of the part: W.first ..
// W.end are the part's elements of the dispatch; both arrays are windowed.

struct Params {
    width: u32,
    total: u32,
    offset: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(256)
fn concat_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let r = i / P.width;
    let j = i % P.width;
    dst[at(1u, r * P.total + P.offset + j)] = src[at(0u, i)];
}

@compute @workgroup_size(256)
fn split_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = item(wid, nwg, lid);
    if i >= W.end {
        return;
    }
    let r = i / P.width;
    let j = i % P.width;
    dst[at(1u, i)] = src[at(0u, r * P.total + P.offset + j)];
}
