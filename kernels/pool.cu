// 2-D max pooling over NHWC tensors, as src/backend/cpu/pool.rs: padding counts as -inf, the
// window is scanned row-major and a value replaces the running maximum only when strictly greater
// (or NaN), so ties go to the first maximum. The backward pass is a gather: each input element
// recomputes the argmax of the windows that contain it and sums their gradients.

struct PoolGeom {
    u64 batch, channels;
    int in_h, in_w, out_h, out_w, kh, kw, sh, sw, ph, pw;
};

__device__ __forceinline__ void window(int o, int kernel, int stride, int pad, int input,
                                       int* start, int* end) {
    int s = o * stride - pad;
    int e = s + kernel;
    *start = s > 0 ? s : 0;
    *end = e < input ? e : input;
}

// The argmax pixel (h · in_w + w) of the window of output (oh, ow) for channel c of one image.
__device__ int window_argmax(const float* img, const PoolGeom& g, int oh, int ow, u64 c) {
    int h0, h1, w0, w1;
    window(oh, g.kh, g.sh, g.ph, g.in_h, &h0, &h1);
    window(ow, g.kw, g.sw, g.pw, g.in_w, &w0, &w1);
    int arg = h0 * g.in_w + w0;
    float m = -F_INF;
    for (int ih = h0; ih < h1; ++ih) {
        for (int iw = w0; iw < w1; ++iw) {
            int pix = ih * g.in_w + iw;
            float v = img[(u64)pix * g.channels + c];
            if (v > m || v != v) {
                m = v;
                arg = pix;
            }
        }
    }
    return arg;
}

extern "C" __global__ void max_pool_fwd(const float* x, float* y, PoolGeom g) {
    u64 n_out = g.batch * (u64)g.out_h * g.out_w * g.channels;
    GRID_LOOP(i, n_out) {
        u64 c = i % g.channels;
        u64 pix = i / g.channels;
        int ow = (int)(pix % g.out_w);
        u64 row = pix / g.out_w;
        int oh = (int)(row % g.out_h);
        u64 n = row / g.out_h;
        const float* img = x + n * (u64)g.in_h * g.in_w * g.channels;
        int h0, h1, w0, w1;
        window(oh, g.kh, g.sh, g.ph, g.in_h, &h0, &h1);
        window(ow, g.kw, g.sw, g.pw, g.in_w, &w0, &w1);
        float m = -F_INF;
        for (int ih = h0; ih < h1; ++ih) {
            for (int iw = w0; iw < w1; ++iw) {
                float v = img[((u64)ih * g.in_w + iw) * g.channels + c];
                if (v > m || v != v) m = v;
            }
        }
        y[i] = m;
    }
}

// The output positions [lo, hi) whose windows contain input position i along one axis.
__device__ __forceinline__ void containing(int i, int kernel, int stride, int pad, int out,
                                           int* lo, int* hi) {
    int a = i + pad + 1 - kernel;
    *lo = a > 0 ? (a + stride - 1) / stride : 0;
    int h = (i + pad) / stride + 1;
    *hi = h < out ? h : out;
}

extern "C" __global__ void max_pool_bwd(const float* x, const float* dy, float* dx, PoolGeom g) {
    u64 n_in = g.batch * (u64)g.in_h * g.in_w * g.channels;
    GRID_LOOP(i, n_in) {
        u64 c = i % g.channels;
        u64 pix = i / g.channels;
        int iw = (int)(pix % g.in_w);
        u64 row = pix / g.in_w;
        int ih = (int)(row % g.in_h);
        u64 n = row / g.in_h;
        const float* img = x + n * (u64)g.in_h * g.in_w * g.channels;
        int me = ih * g.in_w + iw;
        int oh0, oh1, ow0, ow1;
        containing(ih, g.kh, g.sh, g.ph, g.out_h, &oh0, &oh1);
        containing(iw, g.kw, g.sw, g.pw, g.out_w, &ow0, &ow1);
        float acc = 0.0f;
        for (int oh = oh0; oh < oh1; ++oh) {
            for (int ow = ow0; ow < ow1; ++ow) {
                if (window_argmax(img, g, oh, ow, c) == me) {
                    acc += dy[((n * g.out_h + oh) * g.out_w + ow) * g.channels + c];
                }
            }
        }
        dx[i] = acc;
    }
}
