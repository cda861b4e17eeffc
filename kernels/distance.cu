// The exact Euclidean distance transform (Felzenszwalb & Huttenlocher), as
// src/backend/cpu/loss/distance.rs: squared distances along each column, then along each row,
// each a lower envelope of parabolas. One thread per line; each thread keeps its envelope
// (sites, bounds) in its own slice of global scratch memory.

// out[q · os] = min_p (q − p)² + f[p · fs] over finite f[p], or +inf when none is finite.
__device__ void envelope(const float* f, u64 fs, u64 n, float* out, u64 os, int* sites,
                         double* bounds) {
    i64 top = -1;
    for (u64 q = 0; q < n; ++q) {
        double fq = (double)f[q * fs];
        if (!(fq < D_INF)) continue;
        double height = fq + (double)q * (double)q;
        double start;
        while (true) {
            if (top < 0) {
                start = -D_INF;
                break;
            }
            u64 v = (u64)sites[top];
            double s = (height - ((double)f[v * fs] + (double)v * (double)v)) /
                       (2.0 * (double)(q - v));
            if (s <= bounds[top]) {
                --top;
            } else {
                start = s;
                break;
            }
        }
        ++top;
        sites[top] = (int)q;
        bounds[top] = start;
    }
    if (top < 0) {
        for (u64 q = 0; q < n; ++q) out[q * os] = F_INF;
        return;
    }
    i64 k = 0;
    for (u64 q = 0; q < n; ++q) {
        while (k + 1 <= top && bounds[k + 1] < (double)q) ++k;
        u64 s = (u64)sites[k];
        double d = (double)q - (double)s;
        out[q * os] = (float)(d * d + (double)f[s * fs]);
    }
}

// f = 0 on the foreground (mask > 0.5), +inf elsewhere.
extern "C" __global__ void edt_init(const float* mask, float* f, u64 n) {
    GRID_LOOP(i, n) { f[i] = mask[i] > 0.5f ? 0.0f : F_INF; }
}

// Pass 1, one thread per column (b, x): columns[(b · w + x) · h + y].
extern "C" __global__ void edt_columns(const float* f, float* columns, u64 batch, u64 h, u64 w,
                                       int* sites, double* bounds) {
    GRID_LOOP(t, batch * w) {
        u64 b = t / w, x = t % w;
        envelope(f + b * h * w + x, w, h, columns + t * h, 1, sites + t * h, bounds + t * h);
    }
}

// Pass 2, one thread per row (b, y), over the column results; then the square root, or `empty`
// for an image without foreground.
extern "C" __global__ void edt_rows(const float* columns, float* out, u64 batch, u64 h, u64 w,
                                    float empty, int* sites, double* bounds) {
    GRID_LOOP(t, batch * h) {
        u64 b = t / h, y = t % h;
        float* row = out + t * w;
        envelope(columns + b * w * h + y, h, w, row, 1, sites + t * w, bounds + t * w);
        for (u64 x = 0; x < w; ++x) {
            float d = row[x];
            row[x] = d < F_INF ? (float)sqrt((double)d) : empty;
        }
    }
}
