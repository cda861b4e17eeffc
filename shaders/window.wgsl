// The prelude every shader of this folder is compiled with (src/backend/wgpu/window.rs).
//
// A device binds at most `max_storage_buffer_binding_size` bytes of a buffer at a time, so the
// host splits a kernel's work into chunks of units (elements, rows, samples: each kernel says
// which) and dispatches once per chunk. A chunk's kernel handles the indices W.first .. W.end of
// its split range, and each storage array it indexes by position is bound as a window over the
// elements that chunk touches. Kernels keep computing global element indices and read them
// through `at(b, i)`, which subtracts the first element of binding b's window; arrays the host
// always binds whole (weights, per-channel vectors, tables, scratch totals) are indexed directly.

struct Window {
    first: u32,
    end: u32,
    // The first element of each storage binding's window, by binding number (0 when whole).
    off: array<vec4<u32>, 2>,
}

@group(1) @binding(0) var<uniform> W: Window;

// Threads per workgroup of the kernels with one thread per index (`WG` on the host).
const WG: u32 = 256u;

// Element i (a global index) of the array at binding b, inside that binding's window.
fn at(b: u32, i: u32) -> u32 {
    return i - W.off[b / 4u][b % 4u];
}

// The workgroup's number in a grid folded into x and y (the host keeps both within the device's
// dispatch limit).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The index of the split range this thread handles, in one-thread-per-index kernels; threads at
// or past W.end have nothing to do.
fn item(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return W.first + group_index(wid, nwg) * WG + lid;
}
