// The body of vector_math.c, included once per instruction-set level with three macros defined:
// VM_LANES (floats per vector: 4, 8 or 16), VM_TARGET (a target attribute, or nothing) and VM(name),
// which gives every function a per-level name. A level's vectors are never wider than its registers,
// so no call passes a vector the level cannot hold in one.
//
// No include guard: this file is meant to be included several times.

typedef float VM(vf) __attribute__((vector_size(VM_LANES * 4)));
typedef int32_t VM(vi) __attribute__((vector_size(VM_LANES * 4)));
#define vf VM(vf)
#define vi VM(vi)
#define FN static inline __attribute__((always_inline)) VM_TARGET

FN vf VM(splat)(float x) { return (vf){0} + x; }
/// mask ? a : b, lane by lane (mask lanes are all ones or all zeros).
FN vf VM(select)(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }
FN vf VM(load)(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
FN void VM(store)(float *p, vf v) { memcpy(p, &v, sizeof v); }

/// e^x. Clamping keeps 2^n within two normal factors; NaN fails every comparison and passes through.
FN vf VM(exp)(vf x) {
    x = VM(select)(x < -104.0f, VM(splat)(-104.0f), x);
    x = VM(select)(x > 89.0f, VM(splat)(89.0f), x);
    // Adding 1.5 * 2^23 rounds x / ln 2 to an integer held in the low mantissa bits.
    const float magic = 12582912.0f;
    vf shifted = x * 1.44269504088896341f + magic;
    vf n = shifted - magic;
    // ln 2 in two parts, so that r = x - n ln 2 is exact for the n that occur.
    vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    vf p = VM(splat)(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    // 2^n as two factors, so that n from -150 (subnormal results) to 129 stays representable.
    vi k = (vi)shifted - 0x4B400000;
    vi k1 = k >> 1, k2 = k - k1;
    return p * (vf)((k1 + 127) << 23) * (vf)((k2 + 127) << 23);
}

FN vf VM(erf)(vf x) {
    vf a = (vf)((vi)x & 0x7FFFFFFF);
    // Small arguments: x * 1.1283791 + x * u * Q(u), so the last rounding dominates the error.
    vf u = a * a;
    vf q = VM(splat)(-6.013386300764978e-4f);
    q = q * u + 4.997999407351017e-3f;
    q = q * u + -2.6770230382680893e-2f;
    q = q * u + 1.1281926929950714e-1f;
    q = q * u + -3.761250674724579e-1f;
    vf small = a * 1.1283791065216064f + a * (u * q);
    // Large arguments: erfc(a) = exp(-a^2 + G(a - 2.4)).
    vf t = a - 2.4f;
    vf g = VM(splat)(1.630669430596754e-6f);
    g = g * t + -1.458510996599216e-5f;
    g = g * t + 8.709041139809415e-5f;
    g = g * t + -4.695226380135864e-4f;
    g = g * t + 2.387416083365679e-3f;
    g = g * t + -1.176813431084156e-2f;
    g = g * t + 5.949810519814491e-2f;
    g = g * t + -3.6423659324645996e-1f;
    g = g * t + -1.520975112915039f;
    vf large = 1.0f - VM(exp)(g - a * a);
    vf result = VM(select)(a >= 3.925f, VM(splat)(1.0f), large);
    // !(a >= split) also takes NaN, which the small branch propagates.
    result = VM(select)(~(a >= 0.921875f), small, result);
    return (vf)(((vi)result & 0x7FFFFFFF) | ((vi)x & (int32_t)0x80000000));
}

/// x/2 * (1 + erf(x/sqrt 2)).
FN vf VM(gelu)(vf x) { return 0.5f * x * (1.0f + VM(erf)(x * 0.70710678118654752f)); }

/// y[i] = F(x[i]) for n floats, a vector at a time; the tail goes through a zero-padded block.
#define VM_MAP(NAME, F)                                                              \
    static VM_TARGET void VM(NAME)(const float *x, float *y, size_t n) {             \
        size_t i = 0;                                                                \
        for (; i + VM_LANES <= n; i += VM_LANES) VM(store)(y + i, F(VM(load)(x + i))); \
        if (i < n) {                                                                 \
            float block[VM_LANES] = {0};                                             \
            memcpy(block, x + i, (n - i) * sizeof(float));                           \
            VM(store)(block, F(VM(load)(block)));                                    \
            memcpy(y + i, block, (n - i) * sizeof(float));                           \
        }                                                                            \
    }

VM_MAP(map_exp, VM(exp))
VM_MAP(map_erf, VM(erf))
VM_MAP(map_gelu, VM(gelu))
#undef VM_MAP

/// Largest element of a row, NaN if any element is NaN (what the reference max fold gives).
FN float VM(row_max)(const float *x, size_t n) {
    vf best = VM(splat)(-__builtin_inff());
    vi nan = (vi){0};
    size_t i = 0;
    for (; i + VM_LANES <= n; i += VM_LANES) {
        vf v = VM(load)(x + i);
        best = VM(select)(v > best, v, best);
        nan |= v != v;
    }
    float m = -__builtin_inff();
    int saw_nan = 0;
    for (int l = 0; l < VM_LANES; l++) {
        if (best[l] > m) m = best[l];
        saw_nan |= nan[l] != 0;
    }
    for (; i < n; i++) {
        if (x[i] > m) m = x[i];
        saw_nan |= x[i] != x[i];
    }
    return saw_nan ? __builtin_nanf("") : m;
}

/// y = exp(x - m) over the row; returns the sum of y (one partial sum per lane, then the lanes in order).
FN float VM(row_exp_sum)(const float *x, float *y, size_t n, float m) {
    vf sum = (vf){0};
    size_t i = 0;
    for (; i + VM_LANES <= n; i += VM_LANES) {
        vf e = VM(exp)(VM(load)(x + i) - m);
        VM(store)(y + i, e);
        sum += e;
    }
    if (i < n) {
        float block[VM_LANES] = {0};
        memcpy(block, x + i, (n - i) * sizeof(float));
        VM(store)(block, VM(exp)(VM(load)(block) - m));
        memcpy(y + i, block, (n - i) * sizeof(float));
        // Only the row's own lanes count.
        for (size_t l = n - i; l < VM_LANES; l++) block[l] = 0;
        sum += VM(load)(block);
    }
    float total = 0;
    for (int l = 0; l < VM_LANES; l++) total += sum[l];
    return total;
}

/// Softmax (or log-softmax) of `rows` contiguous rows of `length` floats.
static VM_TARGET void VM(softmax)(const float *x, float *y, size_t rows, size_t length, int logarithmic) {
    for (size_t r = 0; r < rows; r++) {
        const float *in = x + r * length;
        float *out = y + r * length;
        float m = VM(row_max)(in, length);
        float sum = VM(row_exp_sum)(in, out, length, m);
        size_t i = 0;
        if (logarithmic) {
            // (x - max) - log(sum), rounded in the order of the reference loop.
            float log_sum = logf(sum);
            for (; i + VM_LANES <= length; i += VM_LANES) VM(store)(out + i, (VM(load)(in + i) - m) - log_sum);
            for (; i < length; i++) out[i] = (in[i] - m) - log_sum;
        } else {
            for (; i + VM_LANES <= length; i += VM_LANES) VM(store)(out + i, VM(load)(out + i) / sum);
            for (; i < length; i++) out[i] /= sum;
        }
    }
}

/// dst[j] = src[j * stride]; the stride-2 loop is written apart so that it vectorises as a deinterleave.
static VM_TARGET void VM(copy_strided)(float *dst, const float *src, size_t count, size_t stride) {
    if (stride == 2) {
        for (size_t j = 0; j < count; j++) dst[j] = src[2 * j];
    } else {
        for (size_t j = 0; j < count; j++) dst[j] = src[j * stride];
    }
}

// MARK: - GEMM epilogue

// Rounded one operation at a time, like the separate operators (see CKernels.h): no contraction here.
FN vf VM(activate)(vf x, int activation, float p0, float p1) {
#pragma clang fp contract(off)
    switch (activation) {
    case SQ_ACTIVATION_RELU: return VM(select)(x < 0.0f, VM(splat)(0.0f), x);
    case SQ_ACTIVATION_CLIP: {
        vf raised = VM(select)(x < p0, VM(splat)(p0), x);
        return VM(select)(raised > p1, VM(splat)(p1), raised);
    }
    case SQ_ACTIVATION_LEAKY_RELU: return VM(select)(x < 0.0f, x * p0, x);
    case SQ_ACTIVATION_HARD_SIGMOID: {
        vf y = x * p0;
        y = y + p1;
        y = VM(select)(y < 0.0f, VM(splat)(0.0f), y);
        return VM(select)(y > 1.0f, VM(splat)(1.0f), y);
    }
    case SQ_ACTIVATION_HARD_SWISH: {
        vf gate = x * (1.0f / 6.0f);
        gate = gate + 0.5f;
        gate = VM(select)(gate < 0.0f, VM(splat)(0.0f), gate);
        gate = VM(select)(gate > 1.0f, VM(splat)(1.0f), gate);
        return x * gate;
    }
    case SQ_ACTIVATION_GELU: return VM(gelu)(x);
    default: return x;
    }
}

/// One row segment: c[j] = act(c[j] + row + column_bias[j]) for j < n (row added when has_row).
FN void VM(epilogue_row)(float *c, size_t n, int has_row, float row, const float *column_bias, int activation,
                         float p0, float p1) {
#pragma clang fp contract(off)
    size_t j = 0;
    for (; j + VM_LANES <= n; j += VM_LANES) {
        vf v = VM(load)(c + j);
        if (has_row) v = v + row;
        if (column_bias) v = v + VM(load)(column_bias + j);
        VM(store)(c + j, VM(activate)(v, activation, p0, p1));
    }
    if (j < n) {
        float block[VM_LANES] = {0}, bias[VM_LANES] = {0};
        memcpy(block, c + j, (n - j) * sizeof(float));
        if (column_bias) memcpy(bias, column_bias + j, (n - j) * sizeof(float));
        vf v = VM(load)(block);
        if (has_row) v = v + row;
        if (column_bias) v = v + VM(load)(bias);
        VM(store)(block, VM(activate)(v, activation, p0, p1));
        memcpy(c + j, block, (n - j) * sizeof(float));
    }
}

static VM_TARGET void VM(epilogue)(float *c, size_t ldc, size_t rows, size_t cols, const sq_epilogue *e) {
    // The switch on the activation is resolved once per row segment, outside the element loop.
    for (size_t r = 0; r < rows; r++) {
        float row = e->row_bias ? e->row_bias[r] : 0.0f;
        float *crow = c + r * ldc;
        int has_row = e->row_bias != NULL;
        switch (e->activation) {
#define VM_EPILOGUE_CASE(ACT) \
        case ACT: VM(epilogue_row)(crow, cols, has_row, row, e->column_bias, ACT, e->parameters[0], e->parameters[1]); break;
        VM_EPILOGUE_CASE(SQ_ACTIVATION_RELU)
        VM_EPILOGUE_CASE(SQ_ACTIVATION_CLIP)
        VM_EPILOGUE_CASE(SQ_ACTIVATION_LEAKY_RELU)
        VM_EPILOGUE_CASE(SQ_ACTIVATION_HARD_SIGMOID)
        VM_EPILOGUE_CASE(SQ_ACTIVATION_HARD_SWISH)
        VM_EPILOGUE_CASE(SQ_ACTIVATION_GELU)
#undef VM_EPILOGUE_CASE
        default: VM(epilogue_row)(crow, cols, has_row, row, e->column_bias, SQ_ACTIVATION_NONE, 0, 0); break;
        }
    }
}

#undef vf
#undef vi
#undef FN
