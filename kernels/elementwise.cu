// Elementwise maps and their gradients, broadcasting binary maps, fill, axpy and dropout.
// Formulas follow src/backend/cpu/elementwise.rs term by term (compiled without FMA contraction).

// Unary op codes, as `UnaryOp` in src/backend/params.rs.
#define OP_RELU 0
#define OP_SIGMOID 1
#define OP_TANH 2
#define OP_EXP 3
#define OP_LOG 4
#define OP_NEG 5
#define OP_ABS 6
#define OP_SQRT 7
#define OP_SQUARE 8
#define OP_AFFINE 9

extern "C" __global__ void unary_fwd(const float* x, float* y, u64 n, int op, float scale,
                                     float shift) {
    GRID_LOOP(i, n) {
        float v = x[i], r;
        switch (op) {
        case OP_RELU: r = v > 0.0f ? v : 0.0f; break;
        case OP_SIGMOID:
            if (v >= 0.0f) {
                r = 1.0f / (1.0f + expf(-v));
            } else {
                float e = expf(v);
                r = e / (1.0f + e);
            }
            break;
        case OP_TANH: r = tanhf(v); break;
        case OP_EXP: r = expf(v); break;
        case OP_LOG: r = logf(v); break;
        case OP_NEG: r = -v; break;
        case OP_ABS: r = fabsf(v); break;
        case OP_SQRT: r = sqrtf(v); break;
        case OP_SQUARE: r = v * v; break;
        default: r = scale * v + shift; break;
        }
        y[i] = r;
    }
}

// dx = dy * f'(x) from `s`: the forward's output y, or its input x for log, abs and square
// (UnaryOp::backward_from_output); ReLU's y > 0 is x > 0.
extern "C" __global__ void unary_bwd(const float* s, const float* dy, float* dx, u64 n, int op,
                                     float scale) {
    GRID_LOOP(i, n) {
        float v = s[i], g = dy[i], r;
        switch (op) {
        case OP_RELU: r = v > 0.0f ? g : 0.0f; break;
        case OP_SIGMOID: r = g * v * (1.0f - v); break;
        case OP_TANH: r = g * (1.0f - v * v); break;
        case OP_EXP: r = g * v; break;
        case OP_LOG: r = g / v; break;
        case OP_NEG: r = -g; break;
        case OP_ABS: r = v > 0.0f ? g : (v < 0.0f ? -g : 0.0f); break;
        case OP_SQRT: r = g * 0.5f / v; break;
        case OP_SQUARE: r = g * 2.0f * v; break;
        default: r = g * scale; break;
        }
        dx[i] = r;
    }
}

// y[i] = a[ia] (op) b[ib], with the output's collapsed axes `dims` and the operands' element
// strides `sa`, `sb` along them (0 where broadcast).
template <typename I>
__device__ void binary_body(const float* a, const float* b, float* y, u64 n, int op, int rank,
                            const Dims8& dims, const Dims8& sa, const Dims8& sb) {
    GRID_LOOP(i, n) {
        I rest = (I)i, oa = 0, ob = 0;
        for (int d = rank - 1; d >= 0; --d) {
            I size = (I)dims.v[d];
            I k = rest % size;
            rest /= size;
            oa += k * (I)sa.v[d];
            ob += k * (I)sb.v[d];
        }
        float u = a[oa], v = b[ob], r;
        switch (op) {
        case 0: r = u + v; break;
        case 1: r = u - v; break;
        case 2: r = u * v; break;
        default: r = u / v; break;
        }
        y[i] = r;
    }
}

extern "C" __global__ void binary32(const float* a, const float* b, float* y, u64 n, int op,
                                    int rank, Dims8 dims, Dims8 sa, Dims8 sb) {
    binary_body<u32>(a, b, y, n, op, rank, dims, sa, sb);
}

extern "C" __global__ void binary64(const float* a, const float* b, float* y, u64 n, int op,
                                    int rank, Dims8 dims, Dims8 sa, Dims8 sb) {
    binary_body<u64>(a, b, y, n, op, rank, dims, sa, sb);
}

// The common case of binary_body without its index arithmetic: y is `n / cols` rows of `cols`,
// and each operand is either all of y's shape (index i) or one row repeated over the rows
// (index i % cols) — bias additions and per-channel scales.
extern "C" __global__ void binary_rows(const float* a, const float* b, float* y, u32 n, u32 cols,
                                       int op, int a_row, int b_row) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        u32 col = i % cols;
        float u = a[a_row ? col : i], v = b[b_row ? col : i], r;
        switch (op) {
        case 0: r = u + v; break;
        case 1: r = u - v; break;
        case 2: r = u * v; break;
        default: r = u / v; break;
        }
        y[i] = r;
    }
}

// y[i] = x[ix]: the broadcast of x into y's collapsed axes (stride 0 along repeated axes).
extern "C" __global__ void broadcast_copy(const float* x, float* y, u64 n, int rank, Dims8 dims,
                                          Dims8 sx) {
    GRID_LOOP(i, n) {
        u64 rest = i, ox = 0;
        for (int d = rank - 1; d >= 0; --d) {
            u64 k = rest % dims.v[d];
            rest /= dims.v[d];
            ox += k * sx.v[d];
        }
        y[i] = x[ox];
    }
}

extern "C" __global__ void fill(float* y, u64 n, float value) {
    GRID_LOOP(i, n) { y[i] = value; }
}

extern "C" __global__ void axpy(float alpha, const float* x, float* y, u64 n) {
    GRID_LOOP(i, n) { y[i] += alpha * x[i]; }
}

// out = src · scale where rng::uniform_keyed(key, i) >= p, else 0; the mask index is the element
// index modulo 2^32, as on every backend.
extern "C" __global__ void dropout(const float* src, float* out, u64 n, u32 key, float p,
                                   float scale) {
    GRID_LOOP(i, n) {
        bool keep = uniform_keyed(key, (u32)i) >= p;
        out[i] = keep ? src[i] * scale : 0.0f;
    }
}
