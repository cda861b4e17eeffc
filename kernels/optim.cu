// Fused SGD and Adam / AdamW updates with PyTorch's rules, term by term as
// src/backend/cpu/optim.rs; scalar factors arrive precomputed (in f64 on the host).

extern "C" __global__ void sgd_step(float* w, const float* grad, float* buf, u64 n, float lr,
                                    float wd, float mu, float damp, int first, int nesterov,
                                    int use_momentum) {
    GRID_LOOP(i, n) {
        float p = w[i], g = grad[i];
        float d = wd != 0.0f ? g + wd * p : g;
        if (use_momentum) {
            float b = first ? d : buf[i] * mu + damp * d;
            buf[i] = b;
            d = nesterov ? d + mu * b : b;
        }
        w[i] = p + -lr * d;
    }
}

extern "C" __global__ void adam_step(float* w, const float* grad, float* m, float* v, u64 n,
                                     float decay, float l2, float w1, float b2, float w2,
                                     float eps, float step_size, float bc2_sqrt) {
    GRID_LOOP(i, n) {
        float p = w[i] * decay;
        float g = grad[i];
        if (l2 != 0.0f) g = g + l2 * p;
        float mi = m[i];
        mi = w1 < 0.5f ? mi + w1 * (g - mi) : g - (g - mi) * (1.0f - w1);
        float vi = v[i] * b2 + w2 * g * g;
        m[i] = mi;
        v[i] = vi;
        w[i] = p + -step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
