// Helpers shared by magnet's CUDA kernels. The backend prepends this file to every kernels/*.cu
// source before compiling it with NVRTC, so the kernel files need no #include.
//
// Conventions: sizes and indices are 64-bit (`u64`), with 32-bit variants of kernels whose index
// arithmetic dominates (64-bit division is slow), picked when every index fits; kernels over n
// elements use grid-stride loops, so any grid size is correct; block sizes are multiples of 32;
// sums accumulate in double and are combined in a fixed order, so results do not depend on the
// launch configuration.

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define F_INF __int_as_float(0x7f800000)
#define D_INF __longlong_as_double(0x7ff0000000000000LL)
#define D_NAN __longlong_as_double(0x7ff8000000000000LL)

#define GRID_LOOP(i, n)                                                                    \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n);                \
         i += (u64)blockDim.x * gridDim.x)

// Up to eight sizes or strides, passed by value.
struct Dims8 {
    u64 v[8];
};

// The "lowbias32" integer hash, as src/backend/rng.rs.
__device__ __forceinline__ u32 hash32(u32 x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

// rng::uniform_keyed: a uniform number in [0, 1) with 24 random bits for element `index`.
__device__ __forceinline__ float uniform_keyed(u32 key, u32 index) {
    u32 rot = (index << 16) | (index >> 16);
    u32 bits = hash32(index ^ hash32(key + rot));
    return (float)(bits >> 8) * (1.0f / 16777216.0f);
}

// max that propagates NaN, as the CPU reductions.
__device__ __forceinline__ float nan_max(float m, float v) {
    return (v > m || v != v) ? v : m;
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a 1-D block (blockDim.x a multiple of 32, at most 1024); every thread must call it.
// The result is valid in every thread.
__device__ double block_sum(double v) {
    __shared__ double partial[32];
    __shared__ double total;
    v = warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int warps = blockDim.x >> 5;
        double w = lane < warps ? partial[lane] : 0.0;
        w = warp_sum(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    double r = total;
    __syncthreads();
    return r;
}

// NaN-propagating max over a 1-D block; same contract as block_sum.
__device__ float block_max(float v) {
    __shared__ float partial[32];
    __shared__ float total;
    v = warp_max(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int warps = blockDim.x >> 5;
        float w = lane < warps ? partial[lane] : -F_INF;
        w = warp_max(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    float r = total;
    __syncthreads();
    return r;
}

// Class index of label `v`, or -1 for the ignore index and for anything that is not an integer
// class in [0, classes) (a GPU kernel cannot report it, so such a row counts as ignored).
__device__ __forceinline__ int class_of(float v, u64 classes, i64 ignore) {
    if (v >= 0.0f && v == floorf(v) && v < 4294967296.0f) {
        u64 k = (u64)v;
        if (ignore >= 0 && (i64)k == ignore) return -1;
        if (k < classes) return (int)k;
    }
    return -1;
}
