// Batch normalisation over the last axis of a `rows × channels` tensor (NHWC flattened), as
// src/backend/cpu/norm.rs computes it.
//
// Statistics come from a two-stage column reduction: `bn_partial` gives each block a tile of
// BN_TILE channels (one per lane, so a warp reads whole row segments) and a slab of rows, and
// writes one f64 partial pair per channel and slab; a finishing kernel, one block per channel,
// adds the partials of all slabs in a fixed order. The per-element kernels then apply
// per-channel coefficients.

#define BN_TILE 32
#define BN_ROWS 8

// (x − mean)·scale + shift rounded step by step, as the CPU backend computes it (no fused
// multiply-add), so that the forward, batch_norm_apply and backward's ReLU mask agree bit for bit.
__device__ __forceinline__ float bn_affine(float x, float mean, float scale, float shift) {
    return __fadd_rn(__fmul_rn(x - mean, scale), shift);
}

// The forward's output: bn_affine, then max(0, ·) when relu != 0.
__device__ __forceinline__ float bn_out(float x, float mean, float scale, float shift, int relu) {
    const float z = bn_affine(x, mean, scale, shift);
    return relu ? fmaxf(z, 0.0f) : z;
}

// The gradient reaching the normalisation: dy, or with relu != 0 dy where the forward's output
// was positive.
__device__ __forceinline__ float bn_masked(float dy, float x, float mean, float scale,
                                           float shift, int relu) {
    return (relu && !(bn_affine(x, mean, scale, shift) > 0.0f)) ? 0.0f : dy;
}

// Partial sums over rows [slab · rows_per_slab, +rows_per_slab) of channels
// [blockIdx.x · BN_TILE, +BN_TILE), block (BN_TILE, BN_ROWS), grid (channel tiles, slabs).
// mode 0 (statistics): Σ(x − k) and Σ(x − k)², with k = x's first row (`dy`, `mean` unused).
// mode 1 (gradient):   Σ dy and Σ dy · (x − mean), dy masked by the ReLU when relu != 0 (with
//                      the forward's scale and shift).
// partial[j · slabs + s] holds the first sum, partial[(channels + j) · slabs + s] the second.
extern "C" __global__ void bn_partial(const float* __restrict__ x, const float* __restrict__ dy,
                                      const float* __restrict__ mean,
                                      const float* __restrict__ scale,
                                      const float* __restrict__ shift, int relu, u64 rows,
                                      u64 channels, u64 rows_per_slab, u64 slabs, int mode,
                                      double* __restrict__ partial) {
    __shared__ double sh_a[BN_ROWS][BN_TILE];
    __shared__ double sh_b[BN_ROWS][BN_TILE];
    const u64 c = (u64)blockIdx.x * BN_TILE + threadIdx.x;
    const u64 s = blockIdx.y;
    const u64 r0 = s * rows_per_slab;
    u64 r1 = r0 + rows_per_slab;
    if (r1 > rows) r1 = rows;
    double a = 0.0, b = 0.0;
    if (c < channels) {
        const float* xc = x + c;
        u64 r = r0 + threadIdx.y;
        const u64 step = BN_ROWS;
        if (mode == 0) {
            const double k = (double)xc[0];
            for (; r + 3 * step < r1; r += 4 * step) {
                float v0 = xc[r * channels];
                float v1 = xc[(r + step) * channels];
                float v2 = xc[(r + 2 * step) * channels];
                float v3 = xc[(r + 3 * step) * channels];
                double d0 = (double)v0 - k, d1 = (double)v1 - k;
                double d2 = (double)v2 - k, d3 = (double)v3 - k;
                a += d0; b += d0 * d0;
                a += d1; b += d1 * d1;
                a += d2; b += d2 * d2;
                a += d3; b += d3 * d3;
            }
            for (; r < r1; r += step) {
                double d = (double)xc[r * channels] - k;
                a += d;
                b += d * d;
            }
        } else {
            const float m = mean[c];
            const float sc = relu ? scale[c] : 0.0f, sh = relu ? shift[c] : 0.0f;
            const float* gc = dy + c;
            for (; r + 3 * step < r1; r += 4 * step) {
                float v0 = xc[r * channels], g0 = gc[r * channels];
                float v1 = xc[(r + step) * channels], g1 = gc[(r + step) * channels];
                float v2 = xc[(r + 2 * step) * channels], g2 = gc[(r + 2 * step) * channels];
                float v3 = xc[(r + 3 * step) * channels], g3 = gc[(r + 3 * step) * channels];
                g0 = bn_masked(g0, v0, m, sc, sh, relu);
                g1 = bn_masked(g1, v1, m, sc, sh, relu);
                g2 = bn_masked(g2, v2, m, sc, sh, relu);
                g3 = bn_masked(g3, v3, m, sc, sh, relu);
                a += (double)g0; b += (double)g0 * (double)(v0 - m);
                a += (double)g1; b += (double)g1 * (double)(v1 - m);
                a += (double)g2; b += (double)g2 * (double)(v2 - m);
                a += (double)g3; b += (double)g3 * (double)(v3 - m);
            }
            for (; r < r1; r += step) {
                float v = xc[r * channels];
                float g = bn_masked(gc[r * channels], v, m, sc, sh, relu);
                a += (double)g;
                b += (double)g * (double)(v - m);
            }
        }
    }
    sh_a[threadIdx.y][threadIdx.x] = a;
    sh_b[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < channels) {
        double ta = 0.0, tb = 0.0;
        for (int i = 0; i < BN_ROWS; ++i) {
            ta += sh_a[i][threadIdx.x];
            tb += sh_b[i][threadIdx.x];
        }
        partial[c * slabs + s] = ta;
        partial[(channels + c) * slabs + s] = tb;
    }
}

// Σ over the slabs of channel blockIdx.x's two partial sums (every thread gets them).
__device__ void bn_totals(const double* partial, u64 channels, u64 slabs, double* a, double* b) {
    const u64 j = blockIdx.x;
    double sa = 0.0, sb = 0.0;
    for (u64 s = threadIdx.x; s < slabs; s += blockDim.x) {
        sa += partial[j * slabs + s];
        sb += partial[(channels + j) * slabs + s];
    }
    *a = block_sum(sa);
    *b = block_sum(sb);
}

// Training statistics, one block per channel: the mean and 1/sqrt(var + eps) (biased variance)
// into save_mean / save_invstd, the running averages updated with the unbiased variance, and
// scale = γ · invstd for bn_apply.
extern "C" __global__ void bn_finish_train(const double* __restrict__ partial, u64 slabs,
                                           const float* __restrict__ x,
                                           const float* __restrict__ gamma, u64 rows,
                                           u64 channels, float eps, float momentum,
                                           float* __restrict__ save_mean,
                                           float* __restrict__ save_invstd,
                                           float* __restrict__ running_mean,
                                           float* __restrict__ running_var,
                                           float* __restrict__ scale) {
    double s, q;
    bn_totals(partial, channels, slabs, &s, &q);
    if (threadIdx.x != 0) return;
    const u64 j = blockIdx.x;
    const double nf = (double)rows;
    const double m = (double)momentum;
    const double d_mean = s / nf;
    double var = q / nf - d_mean * d_mean;
    if (!(var >= 0.0)) var = 0.0;
    const double mu = (double)x[j] + d_mean;
    const double invstd = 1.0 / sqrt(var + (double)eps);
    save_mean[j] = (float)mu;
    save_invstd[j] = (float)invstd;
    scale[j] = (float)((double)gamma[j] * (double)(float)invstd);
    running_mean[j] = (float)((1.0 - m) * (double)running_mean[j] + m * mu);
    running_var[j] = (float)((1.0 - m) * (double)running_var[j] + m * var * nf / (nf - 1.0));
}

// Inference: scale = γ / sqrt(running_var + eps), one thread per channel.
extern "C" __global__ void bn_inference_scale(const float* __restrict__ gamma,
                                              const float* __restrict__ running_var, u64 channels,
                                              float eps, float* __restrict__ scale) {
    GRID_LOOP(j, channels) {
        scale[j] = (float)((double)gamma[j] / sqrt((double)running_var[j] + (double)eps));
    }
}

// Training: scale = γ · invstd from the saved invstd, as bn_finish_train computes it.
extern "C" __global__ void bn_train_scale(const float* __restrict__ gamma,
                                          const float* __restrict__ save_invstd, u64 channels,
                                          float* __restrict__ scale) {
    GRID_LOOP(j, channels) {
        scale[j] = (float)((double)gamma[j] * (double)save_invstd[j]);
    }
}

// Gradient coefficients, one block per channel: dβ = Σ dy, dγ = Σ dy · x̂, and
// a = γ · invstd, b = dβ / N, k = dγ · invstd / N for bn_dx.
extern "C" __global__ void bn_finish_backward(const double* __restrict__ partial, u64 slabs,
                                              const float* __restrict__ gamma,
                                              const float* __restrict__ save_invstd, u64 rows,
                                              u64 channels, float* __restrict__ dgamma,
                                              float* __restrict__ dbeta,
                                              float* __restrict__ coef) {
    double db, t;
    bn_totals(partial, channels, slabs, &db, &t);
    if (threadIdx.x != 0) return;
    const u64 j = blockIdx.x;
    const double nf = (double)rows;
    const double is = (double)save_invstd[j];
    const double dg = t * is;
    dbeta[j] = (float)db;
    dgamma[j] = (float)dg;
    coef[j] = (float)((double)gamma[j] * is);
    coef[channels + j] = (float)(db / nf);
    coef[2 * channels + j] = (float)(dg * is / nf);
}

// y = bn_out(x) per channel: (x − mean) · scale + shift, ReLU'd when relu != 0. With vec4 != 0
// (channels a multiple of 4) each thread handles four neighbouring elements of one row; `n`
// counts elements either way.
extern "C" __global__ void bn_apply(const float* __restrict__ x, const float* __restrict__ mean,
                                    const float* __restrict__ scale,
                                    const float* __restrict__ shift, int relu, u64 n,
                                    u64 channels, int vec4, float* __restrict__ y) {
    const u64 start = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)blockDim.x * gridDim.x;
    if (vec4) {
        const u64 groups = channels / 4, n4 = n / 4;
        const float4* x4 = (const float4*)x;
        float4* y4 = (float4*)y;
        u64 g = start % groups;
        const u64 gstep = stride % groups;
        for (u64 i = start; i < n4; i += stride) {
            const u64 c = 4 * g;
            float4 v = x4[i], o;
            o.x = bn_out(v.x, mean[c], scale[c], shift[c], relu);
            o.y = bn_out(v.y, mean[c + 1], scale[c + 1], shift[c + 1], relu);
            o.z = bn_out(v.z, mean[c + 2], scale[c + 2], shift[c + 2], relu);
            o.w = bn_out(v.w, mean[c + 3], scale[c + 3], shift[c + 3], relu);
            y4[i] = o;
            g += gstep;
            if (g >= groups) g -= groups;
        }
    } else {
        u64 c = start % channels;
        const u64 cstep = stride % channels;
        for (u64 i = start; i < n; i += stride) {
            y[i] = bn_out(x[i], mean[c], scale[c], shift[c], relu);
            c += cstep;
            if (c >= channels) c -= channels;
        }
    }
}

// dx = a · (dy − b − (x − mean) · k) per channel, with coef = [a | b | k] from
// bn_finish_backward and dy masked as in bn_partial; vec4 as in bn_apply.
extern "C" __global__ void bn_dx(const float* __restrict__ x, const float* __restrict__ dy,
                                 const float* __restrict__ mean, const float* __restrict__ coef,
                                 const float* __restrict__ scale,
                                 const float* __restrict__ shift, int relu, u64 n,
                                 u64 channels, int vec4, float* __restrict__ dx) {
    const u64 start = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)blockDim.x * gridDim.x;
    const float* ca = coef;
    const float* cb = coef + channels;
    const float* ck = coef + 2 * channels;
    if (vec4) {
        const u64 groups = channels / 4, n4 = n / 4;
        const float4* x4 = (const float4*)x;
        const float4* g4 = (const float4*)dy;
        float4* d4 = (float4*)dx;
        u64 g = start % groups;
        const u64 gstep = stride % groups;
        for (u64 i = start; i < n4; i += stride) {
            const u64 c = 4 * g;
            float4 v = x4[i], d = g4[i], o;
            if (relu) {
                d.x = bn_masked(d.x, v.x, mean[c], scale[c], shift[c], 1);
                d.y = bn_masked(d.y, v.y, mean[c + 1], scale[c + 1], shift[c + 1], 1);
                d.z = bn_masked(d.z, v.z, mean[c + 2], scale[c + 2], shift[c + 2], 1);
                d.w = bn_masked(d.w, v.w, mean[c + 3], scale[c + 3], shift[c + 3], 1);
            }
            o.x = ca[c] * (d.x - cb[c] - (v.x - mean[c]) * ck[c]);
            o.y = ca[c + 1] * (d.y - cb[c + 1] - (v.y - mean[c + 1]) * ck[c + 1]);
            o.z = ca[c + 2] * (d.z - cb[c + 2] - (v.z - mean[c + 2]) * ck[c + 2]);
            o.w = ca[c + 3] * (d.w - cb[c + 3] - (v.w - mean[c + 3]) * ck[c + 3]);
            d4[i] = o;
            g += gstep;
            if (g >= groups) g -= groups;
        }
    } else {
        u64 c = start % channels;
        const u64 cstep = stride % channels;
        for (u64 i = start; i < n; i += stride) {
            const float d = relu ? bn_masked(dy[i], x[i], mean[c], scale[c], shift[c], 1) : dy[i];
            dx[i] = ca[c] * (d - cb[c] - (x[i] - mean[c]) * ck[c]);
            c += cstep;
            if (c >= channels) c -= channels;
        }
    }
}
