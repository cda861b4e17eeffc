// Reductions (sum, mean, max) to a broadcastable shape, and softmax / log-softmax over the last
// axis with their gradients. Sums accumulate in double, as on the CPU.

#define RED_SUM 0
#define RED_MEAN 1
#define RED_MAX 2

// Generic reduction. Output j (blockIdx.x) reduces `count` input elements: its kept index picks a
// base offset through (kept_dims, kept_strides), each reduced index k adds an offset through
// (red_dims, red_strides). The reduced range is split in `gridDim.y` chunks of `chunk`
// elements; with one chunk the block writes y[j], otherwise part[j · gridDim.y + chunk index]
// (a double sum, or the max), finished by reduce_partials.
extern "C" __global__ void reduce_generic(const float* x, float* y, double* part, u64 count,
                                          u64 chunk, int op, int kept_rank, Dims8 kept_dims,
                                          Dims8 kept_strides, int red_rank, Dims8 red_dims,
                                          Dims8 red_strides) {
    u64 j = blockIdx.x;
    u64 rest = j, base = 0;
    for (int d = kept_rank - 1; d >= 0; --d) {
        u64 k = rest % kept_dims.v[d];
        rest /= kept_dims.v[d];
        base += k * kept_strides.v[d];
    }
    u64 begin = (u64)blockIdx.y * chunk;
    u64 end = begin + chunk < count ? begin + chunk : count;
    double sum = 0.0;
    float mx = -F_INF;
    for (u64 k = begin + threadIdx.x; k < end; k += blockDim.x) {
        u64 r = k, off = base;
        for (int d = red_rank - 1; d >= 0; --d) {
            u64 q = r % red_dims.v[d];
            r /= red_dims.v[d];
            off += q * red_strides.v[d];
        }
        float v = x[off];
        sum += (double)v;
        mx = nan_max(mx, v);
    }
    sum = block_sum(sum);
    mx = block_max(mx);
    if (threadIdx.x != 0) return;
    if (gridDim.y == 1) {
        y[j] = op == RED_MAX ? mx : (op == RED_MEAN ? (float)(sum / (double)count) : (float)sum);
    } else {
        part[j * gridDim.y + blockIdx.y] = op == RED_MAX ? (double)mx : sum;
    }
}

// Column partials of a `rows × cols` matrix: block (32, 8) covers 32 columns and the rows of
// chunk blockIdx.y; part[chunk · cols + c] gets the chunk's sum (or max) of column c.
extern "C" __global__ void reduce_cols_partial(const float* x, double* part, u64 rows, u64 cols,
                                               u64 rows_per_chunk, int op) {
    __shared__ double sums[8][32];
    __shared__ float maxs[8][32];
    u64 c = (u64)blockIdx.x * 32 + threadIdx.x;
    u64 begin = (u64)blockIdx.y * rows_per_chunk;
    u64 end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
    double sum = 0.0;
    float mx = -F_INF;
    if (c < cols) {
        for (u64 r = begin + threadIdx.y; r < end; r += 8) {
            float v = x[r * cols + c];
            sum += (double)v;
            mx = nan_max(mx, v);
        }
    }
    sums[threadIdx.y][threadIdx.x] = sum;
    maxs[threadIdx.y][threadIdx.x] = mx;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        for (int t = 1; t < 8; ++t) {
            sum += sums[t][threadIdx.x];
            mx = nan_max(mx, maxs[t][threadIdx.x]);
        }
        part[(u64)blockIdx.y * cols + c] = op == RED_MAX ? (double)mx : sum;
    }
}

// y[j] from the `chunks` partials part[j · stride_j + p · stride_p], in order.
extern "C" __global__ void reduce_partials(const double* part, float* y, u64 outputs, u64 chunks,
                                           u64 stride_j, u64 stride_p, u64 count, int op) {
    GRID_LOOP(j, outputs) {
        double sum = 0.0;
        float mx = -F_INF;
        for (u64 p = 0; p < chunks; ++p) {
            double v = part[j * stride_j + p * stride_p];
            sum += v;
            mx = nan_max(mx, (float)v);
        }
        y[j] = op == RED_MAX ? mx : (op == RED_MEAN ? (float)(sum / (double)count) : (float)sum);
    }
}

// Softmax (or log-softmax) of each row of a rows × cols matrix, one warp per row.
extern "C" __global__ void softmax_fwd(const float* x, float* y, u64 rows, u64 cols, int log_) {
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    u32 lane = threadIdx.x & 31;
    for (u64 r = warp; r < rows; r += warps) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        float mx = -F_INF;
        for (u64 c = lane; c < cols; c += 32) mx = nan_max(mx, xr[c]);
        mx = warp_max(mx);
        double sum = 0.0;
        for (u64 c = lane; c < cols; c += 32) sum += (double)expf(xr[c] - mx);
        sum = warp_sum(sum);
        if (log_) {
            float log_sum = (float)log(sum);
            for (u64 c = lane; c < cols; c += 32) yr[c] = (xr[c] - mx) - log_sum;
        } else {
            float s = (float)sum;
            for (u64 c = lane; c < cols; c += 32) yr[c] = expf(xr[c] - mx) / s;
        }
    }
}

// Gradient of softmax_fwd from its output y and the output gradient dy, one warp per row.
extern "C" __global__ void softmax_bwd(const float* y, const float* dy, float* dx, u64 rows,
                                       u64 cols, int log_) {
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    u32 lane = threadIdx.x & 31;
    for (u64 r = warp; r < rows; r += warps) {
        const float* yr = y + r * cols;
        const float* gr = dy + r * cols;
        float* dr = dx + r * cols;
        double s = 0.0;
        if (log_) {
            for (u64 c = lane; c < cols; c += 32) s += (double)gr[c];
        } else {
            for (u64 c = lane; c < cols; c += 32) s += (double)yr[c] * (double)gr[c];
        }
        float sf = (float)warp_sum(s);
        if (log_) {
            for (u64 c = lane; c < cols; c += 32) dr[c] = gr[c] - expf(yr[c]) * sf;
        } else {
            for (u64 c = lane; c < cols; c += 32) dr[c] = yr[c] * (gr[c] - sf);
        }
    }
}
