// Bilinear resampling of NHWC tensors with PyTorch's source-index rules, as
// src/backend/cpu/resample.rs: the taps are computed in f32 with explicit roundings so they are
// bit-identical to the CPU's. The backward pass is a gather: each input element sums the output
// gradients that sampled it, found by binary search (the first tap is monotonic in the output
// position), so no atomics are needed and results are deterministic.

struct Tap {
    int i0, i1;
    float l0, l1;
};

// The taps of output position o; `scale` is computed on the host exactly as the CPU does.
__device__ __forceinline__ Tap tap_of(int o, int input, int output, float scale, int align) {
    Tap t;
    if (input == output) {
        t.i0 = o;
        t.i1 = o;
        t.l0 = 1.0f;
        t.l1 = 0.0f;
        return t;
    }
    float src;
    if (align) {
        src = __fmul_rn(scale, (float)o);
    } else {
        src = fmaxf(__fadd_rn(__fmul_rn(scale, __fadd_rn((float)o, 0.5f)), -0.5f), 0.0f);
    }
    int i0 = min((int)floorf(src), input - 1);
    float l1 = fminf(fmaxf(__fsub_rn(src, (float)i0), 0.0f), 1.0f);
    t.i0 = i0;
    t.i1 = i0 < input - 1 ? i0 + 1 : i0;
    t.l0 = __fsub_rn(1.0f, l1);
    t.l1 = l1;
    return t;
}

// The first output position whose first tap is at least `i`.
__device__ int first_at_least(int i, int input, int output, float scale, int align) {
    int lo = 0, hi = output;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (tap_of(mid, input, output, scale, align).i0 >= i) hi = mid; else lo = mid + 1;
    }
    return lo;
}

extern "C" __global__ void upsample_fwd(const float* x, float* y, u64 batch, int in_h, int in_w,
                                        u64 channels, int out_h, int out_w, float scale_h,
                                        float scale_w, int align) {
    u64 n_out = batch * (u64)out_h * out_w * channels;
    GRID_LOOP(i, n_out) {
        u64 c = i % channels;
        u64 pix = i / channels;
        int ow = (int)(pix % out_w);
        u64 row = pix / out_w;
        int oh = (int)(row % out_h);
        u64 n = row / out_h;
        Tap h = tap_of(oh, in_h, out_h, scale_h, align);
        Tap w = tap_of(ow, in_w, out_w, scale_w, align);
        const float* img = x + n * (u64)in_h * in_w * channels;
        u64 row_in = (u64)in_w * channels;
        float a0 = img[h.i0 * row_in + w.i0 * channels + c];
        float a1 = img[h.i0 * row_in + w.i1 * channels + c];
        float b0 = img[h.i1 * row_in + w.i0 * channels + c];
        float b1 = img[h.i1 * row_in + w.i1 * channels + c];
        y[i] = h.l0 * (w.l0 * a0 + w.l1 * a1) + h.l1 * (w.l0 * b0 + w.l1 * b1);
    }
}

extern "C" __global__ void upsample_bwd(const float* dy, float* dx, u64 batch, int in_h, int in_w,
                                        u64 channels, int out_h, int out_w, float scale_h,
                                        float scale_w, int align) {
    u64 n_in = batch * (u64)in_h * in_w * channels;
    GRID_LOOP(i, n_in) {
        u64 c = i % channels;
        u64 pix = i / channels;
        int iw = (int)(pix % in_w);
        u64 row = pix / in_w;
        int ih = (int)(row % in_h);
        u64 n = row / in_h;
        // Readers of ih have their first tap at ih - 1 or ih.
        int oh0 = first_at_least(ih - 1, in_h, out_h, scale_h, align);
        int oh1 = first_at_least(ih + 1, in_h, out_h, scale_h, align);
        int ow0 = first_at_least(iw - 1, in_w, out_w, scale_w, align);
        int ow1 = first_at_least(iw + 1, in_w, out_w, scale_w, align);
        const float* g = dy + n * (u64)out_h * out_w * channels;
        float acc = 0.0f;
        for (int oh = oh0; oh < oh1; ++oh) {
            Tap h = tap_of(oh, in_h, out_h, scale_h, align);
            float wh = (h.i0 == ih ? h.l0 : 0.0f) + (h.i1 == ih ? h.l1 : 0.0f);
            if (h.i0 != ih && h.i1 != ih) continue;
            for (int ow = ow0; ow < ow1; ++ow) {
                Tap w = tap_of(ow, in_w, out_w, scale_w, align);
                if (w.i0 != iw && w.i1 != iw) continue;
                float ww = (w.i0 == iw ? w.l0 : 0.0f) + (w.i1 == iw ? w.l1 : 0.0f);
                acc += (wh * ww) * g[((u64)oh * out_w + ow) * channels + c];
            }
        }
        dx[i] = acc;
    }
}
