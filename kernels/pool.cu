// 2-D max pooling over NHWC tensors, as src/backend/cpu/pool.rs: padding counts as -inf, the
// window is scanned row-major and a value replaces the running maximum only when strictly greater
// (or NaN), so ties go to the first maximum. The backward pass is a gather: each input element
// recomputes the argmax of the windows that contain it and sums their gradients; when the
// windows tile the input (stride = kernel, no padding, no remainder, as U-Net's 2×2 pooling),
// each output element instead finds its window's argmax once and writes the whole window.

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
template <typename I>
__device__ int window_argmax(const float* img, const PoolGeom& g, int oh, int ow, I c) {
    int h0, h1, w0, w1;
    window(oh, g.kh, g.sh, g.ph, g.in_h, &h0, &h1);
    window(ow, g.kw, g.sw, g.pw, g.in_w, &w0, &w1);
    int arg = h0 * g.in_w + w0;
    float m = -F_INF;
    for (int ih = h0; ih < h1; ++ih) {
        for (int iw = w0; iw < w1; ++iw) {
            int pix = ih * g.in_w + iw;
            float v = img[(I)pix * (I)g.channels + c];
            if (v > m || v != v) {
                m = v;
                arg = pix;
            }
        }
    }
    return arg;
}

// Index arithmetic in I: u32 when every index fits (64-bit division is several times slower).
template <typename I>
__device__ void max_pool_fwd_body(const float* x, float* y, const PoolGeom& g) {
    I channels = (I)g.channels;
    I n_out = (I)g.batch * (I)g.out_h * (I)g.out_w * channels;
    GRID_LOOP(k, n_out) {
        I i = (I)k;
        I c = i % channels;
        I pix = i / channels;
        int ow = (int)(pix % (I)g.out_w);
        I row = pix / (I)g.out_w;
        int oh = (int)(row % (I)g.out_h);
        I n = row / (I)g.out_h;
        const float* img = x + n * (I)g.in_h * (I)g.in_w * channels;
        int h0, h1, w0, w1;
        window(oh, g.kh, g.sh, g.ph, g.in_h, &h0, &h1);
        window(ow, g.kw, g.sw, g.pw, g.in_w, &w0, &w1);
        float m = -F_INF;
        for (int ih = h0; ih < h1; ++ih) {
            for (int iw = w0; iw < w1; ++iw) {
                float v = img[((I)ih * (I)g.in_w + (I)iw) * channels + c];
                if (v > m || v != v) m = v;
            }
        }
        y[i] = m;
    }
}

extern "C" __global__ void max_pool_fwd32(const float* x, float* y, PoolGeom g) {
    max_pool_fwd_body<u32>(x, y, g);
}

extern "C" __global__ void max_pool_fwd64(const float* x, float* y, PoolGeom g) {
    max_pool_fwd_body<u64>(x, y, g);
}

// The output positions [lo, hi) whose windows contain input position i along one axis.
__device__ __forceinline__ void containing(int i, int kernel, int stride, int pad, int out,
                                           int* lo, int* hi) {
    int a = i + pad + 1 - kernel;
    *lo = a > 0 ? (a + stride - 1) / stride : 0;
    int h = (i + pad) / stride + 1;
    *hi = h < out ? h : out;
}

template <typename I>
__device__ void max_pool_bwd_body(const float* x, const float* dy, float* dx, const PoolGeom& g) {
    I channels = (I)g.channels;
    I n_in = (I)g.batch * (I)g.in_h * (I)g.in_w * channels;
    GRID_LOOP(k, n_in) {
        I i = (I)k;
        I c = i % channels;
        I pix = i / channels;
        int iw = (int)(pix % (I)g.in_w);
        I row = pix / (I)g.in_w;
        int ih = (int)(row % (I)g.in_h);
        I n = row / (I)g.in_h;
        const float* img = x + n * (I)g.in_h * (I)g.in_w * channels;
        int me = ih * g.in_w + iw;
        int oh0, oh1, ow0, ow1;
        containing(ih, g.kh, g.sh, g.ph, g.out_h, &oh0, &oh1);
        containing(iw, g.kw, g.sw, g.pw, g.out_w, &ow0, &ow1);
        float acc = 0.0f;
        for (int oh = oh0; oh < oh1; ++oh) {
            for (int ow = ow0; ow < ow1; ++ow) {
                if (window_argmax<I>(img, g, oh, ow, c) == me) {
                    acc += dy[((n * (I)g.out_h + (I)oh) * (I)g.out_w + (I)ow) * channels + c];
                }
            }
        }
        dx[i] = acc;
    }
}

extern "C" __global__ void max_pool_bwd32(const float* x, const float* dy, float* dx, PoolGeom g) {
    max_pool_bwd_body<u32>(x, dy, dx, g);
}

extern "C" __global__ void max_pool_bwd64(const float* x, const float* dy, float* dx, PoolGeom g) {
    max_pool_bwd_body<u64>(x, dy, dx, g);
}

// The backward pass over windows that tile the input: every input element lies in exactly one
// window, so the gradient of output i goes to its window's argmax and the rest of the window is 0.
template <typename I>
__device__ void max_pool_bwd_tiled_body(const float* x, const float* dy, float* dx,
                                        const PoolGeom& g) {
    I channels = (I)g.channels;
    I n_out = (I)g.batch * (I)g.out_h * (I)g.out_w * channels;
    GRID_LOOP(k, n_out) {
        I i = (I)k;
        I c = i % channels;
        I pix = i / channels;
        int ow = (int)(pix % (I)g.out_w);
        I row = pix / (I)g.out_w;
        int oh = (int)(row % (I)g.out_h);
        I image = (row / (I)g.out_h) * (I)g.in_h * (I)g.in_w * channels;
        int arg = window_argmax<I>(x + image, g, oh, ow, c);
        float grad = dy[i];
        for (int ih = oh * g.kh; ih < (oh + 1) * g.kh; ++ih) {
            for (int iw = ow * g.kw; iw < (ow + 1) * g.kw; ++iw) {
                int at = ih * g.in_w + iw;
                dx[image + (I)at * channels + c] = at == arg ? grad : 0.0f;
            }
        }
    }
}

extern "C" __global__ void max_pool_bwd_tiled32(const float* x, const float* dy, float* dx,
                                                PoolGeom g) {
    max_pool_bwd_tiled_body<u32>(x, dy, dx, g);
}

extern "C" __global__ void max_pool_bwd_tiled64(const float* x, const float* dy, float* dx,
                                                PoolGeom g) {
    max_pool_bwd_tiled_body<u64>(x, dy, dx, g);
}
