// Losses with their gradients, foreground masks and confusion counts, following
// src/backend/cpu/loss.rs: per-row arithmetic in double, sums combined in a fixed order. Labels
// that are neither a class nor the ignore index count as ignored (see class_of).

// max and ln Σ exp(z − max) of a row, in double (max as f32::max, which skips NaN).
__device__ void log_sum_exp(const float* z, u64 classes, double* max_out, double* lse_out) {
    float m = -F_INF;
    for (u64 k = 0; k < classes; ++k) m = fmaxf(m, z[k]);
    double mx = (double)m, s = 0.0;
    for (u64 k = 0; k < classes; ++k) s += exp((double)z[k] - mx);
    *max_out = mx;
    *lse_out = log(s);
}

// (1 − q)^γ · (−log q) and the gradient factor g, from log q.
__device__ void focal_terms(double log_q, double gamma, double* loss, double* g) {
    if (gamma == 0.0) {
        *loss = -log_q;
        *g = 1.0;
        return;
    }
    double q = exp(log_q);
    double one_minus_q = -expm1(log_q);
    double factor = pow(one_minus_q, gamma);
    double ratio = one_minus_q > 0.0 ? log_q / one_minus_q : -1.0;
    *loss = -factor * log_q;
    *g = factor * (1.0 - gamma * q * ratio);
}

// a_i = w[y_i] · pw_i for a counted row, or 0 with class -1.
__device__ __forceinline__ double row_weight(const float* labels, const float* cw, const float* pw,
                                             u64 row, u64 classes, i64 ignore, int* cls) {
    int c = class_of(labels[row], classes, ignore);
    *cls = c;
    if (c < 0) return 0.0;
    double a = cw ? (double)cw[c] : 1.0;
    if (pw) a *= (double)pw[row];
    return a;
}

// Per-block partial sums of Σ a_i (part[2b]) and Σ a_i · loss_i (part[2b + 1]).
extern "C" __global__ void ce_partial(const float* z, const float* labels, const float* cw,
                                      const float* pw, u64 rows, u64 classes, i64 ignore,
                                      double gamma, double* part) {
    double den = 0.0, num = 0.0;
    GRID_LOOP(r, rows) {
        int c;
        double a = row_weight(labels, cw, pw, r, classes, ignore, &c);
        if (c < 0) continue;
        const float* zr = z + r * classes;
        double mx, lse;
        log_sum_exp(zr, classes, &mx, &lse);
        double l, g;
        focal_terms(((double)zr[c] - mx) - lse, gamma, &l, &g);
        den += a;
        num += a * l;
    }
    den = block_sum(den);
    num = block_sum(num);
    if (threadIdx.x == 0) {
        part[2 * blockIdx.x] = den;
        part[2 * blockIdx.x + 1] = num;
    }
}

// sums[j] = Σ_p part[p · width + j], one block per j, in a fixed order.
extern "C" __global__ void sum_partials(const double* part, u64 parts, u64 width, double* sums) {
    u64 j = blockIdx.x;
    double s = 0.0;
    for (u64 p = threadIdx.x; p < parts; p += blockDim.x) s += part[p * width + j];
    s = block_sum(s);
    if (threadIdx.x == 0) sums[j] = s;
}

// loss = Σ a·l / Σ a, or 0 when Σ a = 0.
extern "C" __global__ void ce_loss(const double* sums, float* loss) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double den = sums[0];
        loss[0] = den == 0.0 ? 0.0f : (float)(sums[1] / den);
    }
}

extern "C" __global__ void ce_grad(const float* z, const float* labels, const float* cw,
                                   const float* pw, u64 rows, u64 classes, i64 ignore,
                                   double gamma, const double* sums, float* grad) {
    double den = sums[0];
    GRID_LOOP(r, rows) {
        float* gr = grad + r * classes;
        int c;
        double a = row_weight(labels, cw, pw, r, classes, ignore, &c);
        if (c < 0 || den == 0.0) {
            for (u64 k = 0; k < classes; ++k) gr[k] = 0.0f;
            continue;
        }
        const float* zr = z + r * classes;
        double mx, lse;
        log_sum_exp(zr, classes, &mx, &lse);
        double l, g;
        focal_terms(((double)zr[c] - mx) - lse, gamma, &l, &g);
        double scale = a / den * g;
        for (u64 k = 0; k < classes; ++k) {
            double prob = exp((double)zr[k] - mx - lse);
            double onehot = (u64)c == k ? 1.0 : 0.0;
            gr[k] = (float)(scale * (prob - onehot));
        }
    }
}

__device__ __forceinline__ double softplus(double x) {
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

__device__ __forceinline__ double sigmoid_d(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

// Writes the gradient and a per-block partial of Σ pw · (pos · t · softplus(−x) + (1 − t) ·
// softplus(x)) to part[b].
extern "C" __global__ void bce_partial(const float* x, const float* t, const float* pw, u64 n,
                                       double pos, double inv_n, float* grad, double* part) {
    double sum = 0.0;
    GRID_LOOP(i, n) {
        double xi = (double)x[i], ti = (double)t[i];
        double w = pw ? (double)pw[i] : 1.0;
        sum += w * (pos * ti * softplus(-xi) + (1.0 - ti) * softplus(xi));
        double s = sigmoid_d(xi);
        grad[i] = (float)(w * inv_n * ((1.0 - ti) * s - pos * ti * (1.0 - s)));
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0) part[blockIdx.x] = sum;
}

extern "C" __global__ void scale_loss(const double* sums, double scale, float* loss) {
    if (threadIdx.x == 0 && blockIdx.x == 0) loss[0] = (float)(sums[0] * scale);
}

// Soft Dice, step 1: per row, the class (or -1) and the row's max and ln Σ exp.
extern "C" __global__ void dice_rows(const float* z, const float* labels, u64 rows, u64 classes,
                                     i64 ignore, int* cls, double* stats) {
    GRID_LOOP(r, rows) {
        int c = class_of(labels[r], classes, ignore);
        cls[r] = c;
        double mx = 0.0, lse = 0.0;
        if (c >= 0) log_sum_exp(z + r * classes, classes, &mx, &lse);
        stats[2 * r] = mx;
        stats[2 * r + 1] = lse;
    }
}

// Step 2: per image (blockIdx.z), chunk of its rows (blockIdx.y) and 32 classes (blockIdx.x,
// threadIdx.x), partial sums of p·t, p and t over counted rows; block (32, 8).
// part[((img · chunks + chunk) · 3 + s) · classes + k].
extern "C" __global__ void dice_partial(const float* z, const int* cls, const double* stats,
                                        u64 ppi, u64 classes, u64 rows_per_chunk, double* part) {
    __shared__ double acc[3][8][32];
    u64 k = (u64)blockIdx.x * 32 + threadIdx.x;
    u64 img = blockIdx.z, chunk = blockIdx.y, chunks = gridDim.y;
    u64 begin = chunk * rows_per_chunk;
    u64 end = begin + rows_per_chunk < ppi ? begin + rows_per_chunk : ppi;
    double inter = 0.0, psum = 0.0, tsum = 0.0;
    if (k < classes) {
        for (u64 j = begin + threadIdx.y; j < end; j += 8) {
            u64 r = img * ppi + j;
            int c = cls[r];
            if (c < 0) continue;
            double p = exp((double)z[r * classes + k] - stats[2 * r] - stats[2 * r + 1]);
            psum += p;
            if ((u64)c == k) {
                inter += p;
                tsum += 1.0;
            }
        }
    }
    acc[0][threadIdx.y][threadIdx.x] = inter;
    acc[1][threadIdx.y][threadIdx.x] = psum;
    acc[2][threadIdx.y][threadIdx.x] = tsum;
    __syncthreads();
    if (threadIdx.y == 0 && k < classes) {
        for (int t = 1; t < 8; ++t) {
            inter += acc[0][t][threadIdx.x];
            psum += acc[1][t][threadIdx.x];
            tsum += acc[2][t][threadIdx.x];
        }
        double* out = part + (img * chunks + chunk) * 3 * classes;
        out[k] = inter;
        out[classes + k] = psum;
        out[2 * classes + k] = tsum;
    }
}

// Step 3: per (image, class), the Dice term and the gradient coefficients dL/dp_c = −a·t + b.
extern "C" __global__ void dice_coef(const double* part, u64 images, u64 chunks, u64 classes,
                                     u64 first_class, double eps, double terms, double* coef,
                                     double* term) {
    GRID_LOOP(i, images * classes) {
        u64 img = i / classes, k = i % classes;
        double inter = 0.0, psum = 0.0, tsum = 0.0;
        for (u64 ch = 0; ch < chunks; ++ch) {
            const double* p = part + (img * chunks + ch) * 3 * classes;
            inter += p[k];
            psum += p[classes + k];
            tsum += p[2 * classes + k];
        }
        double denom = psum + tsum + eps;
        if (k < first_class || denom == 0.0) {
            coef[2 * i] = 0.0;
            coef[2 * i + 1] = 0.0;
            term[i] = 0.0;
        } else {
            term[i] = 1.0 - (2.0 * inter + eps) / denom;
            coef[2 * i] = 2.0 / (terms * denom);
            coef[2 * i + 1] = (2.0 * inter + eps) / (terms * denom * denom);
        }
    }
}

// Step 4 (one block): loss = Σ terms / count.
extern "C" __global__ void dice_loss(const double* term, u64 n, double count, float* loss) {
    double s = 0.0;
    for (u64 i = threadIdx.x; i < n; i += blockDim.x) s += term[i];
    s = block_sum(s);
    if (threadIdx.x == 0) loss[0] = (float)(s / count);
}

// Step 5: through the softmax, dz_j = p_j · (G_j − Σ_c p_c · G_c).
extern "C" __global__ void dice_grad(const float* z, const int* cls, const double* stats,
                                     const double* coef, u64 rows, u64 ppi, u64 classes,
                                     float* grad) {
    GRID_LOOP(r, rows) {
        float* gr = grad + r * classes;
        int c = cls[r];
        if (c < 0) {
            for (u64 k = 0; k < classes; ++k) gr[k] = 0.0f;
            continue;
        }
        const float* zr = z + r * classes;
        const double* cf = coef + 2 * (r / ppi) * classes;
        double mx = stats[2 * r], lse = stats[2 * r + 1];
        double dot = 0.0;
        for (u64 k = 0; k < classes; ++k) {
            double p = exp((double)zr[k] - mx - lse);
            double t = (u64)c == k ? 1.0 : 0.0;
            dot += p * (-cf[2 * k] * t + cf[2 * k + 1]);
        }
        for (u64 k = 0; k < classes; ++k) {
            double p = exp((double)zr[k] - mx - lse);
            double t = (u64)c == k ? 1.0 : 0.0;
            gr[k] = (float)(p * ((-cf[2 * k] * t + cf[2 * k + 1]) - dot));
        }
    }
}

extern "C" __global__ void foreground_mask(const float* labels, float* mask, u64 n,
                                           float background, int has_ignore, float ignore) {
    GRID_LOOP(i, n) {
        float l = labels[i];
        bool fg = l != background && !(has_ignore && l == ignore);
        mask[i] = fg ? 1.0f : 0.0f;
    }
}

// Confusion counts: counts[img, t, k] += 1 for each counted pixel with label t and argmax k
// (first maximum on ties). With `shared_hist`, blockIdx.y is the image and the block first
// counts into a shared classes² histogram (dynamic shared memory).
extern "C" __global__ void confusion_count(const float* z, const float* labels, u64 images,
                                           u64 ppi, u64 classes, i64 ignore, u32* counts,
                                           int shared_hist) {
    extern __shared__ u32 hist[];
    u64 cells = classes * classes;
    if (shared_hist) {
        for (u64 i = threadIdx.x; i < cells; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        u64 img = blockIdx.y;
        GRID_LOOP(j, ppi) {
            u64 r = img * ppi + j;
            int t = class_of(labels[r], classes, ignore);
            if (t < 0) continue;
            const float* zr = z + r * classes;
            u64 best = 0;
            for (u64 k = 1; k < classes; ++k)
                if (zr[k] > zr[best]) best = k;
            atomicAdd(&hist[(u64)t * classes + best], 1u);
        }
        __syncthreads();
        for (u64 i = threadIdx.x; i < cells; i += blockDim.x)
            if (hist[i]) atomicAdd(&counts[img * cells + i], hist[i]);
    } else {
        GRID_LOOP(r, images * ppi) {
            int t = class_of(labels[r], classes, ignore);
            if (t < 0) continue;
            const float* zr = z + r * classes;
            u64 best = 0;
            for (u64 k = 1; k < classes; ++k)
                if (zr[k] > zr[best]) best = k;
            atomicAdd(&counts[(r / ppi) * cells + (u64)t * classes + best], 1u);
        }
    }
}

extern "C" __global__ void u32_to_f32(const u32* src, float* dst, u64 n) {
    GRID_LOOP(i, n) { dst[i] = (float)src[i]; }
}

// Validation (optional, see CudaBackend::set_validate_labels): `first` (initialised to
// u64::MAX) receives the smallest index whose value is invalid. Mode 0: a class in
// [0, classes) or the ignore index; 1: a non-negative integer; 2: finite and >= 0.
extern "C" __global__ void find_invalid(const float* v, u64 n, u64 classes, i64 ignore, int mode,
                                        u64* first) {
    GRID_LOOP(i, n) {
        float x = v[i];
        bool ok;
        if (mode == 0) {
            bool integer = x >= 0.0f && x == floorf(x) && x < 4294967296.0f;
            ok = integer && ((ignore >= 0 && (i64)(u64)x == ignore) || (u64)x < classes);
        } else if (mode == 1) {
            ok = x >= 0.0f && x < F_INF && x == floorf(x);
        } else {
            ok = x >= 0.0f && x < F_INF;
        }
        if (!ok) atomicMin(first, i);
    }
}
