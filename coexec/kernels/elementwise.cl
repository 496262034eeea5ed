__kernel void binary(__global const float *a, __global const float *b, __global float *y, int inner_b,
                     int outer_b, int n0, int mul, float lo, float hi) {
    /* y = a op b over a's elements [n0, ...); element i reads b[(i / inner_b) % outer_b]:
       b of a's shape (1, size), one value per channel (the channel's element count, channels:
       squeeze-excite scales), one per last-axis position (1, its length: a bias), a scalar (1, 1) */
    int i = get_global_id(0) + n0;
    float v = b[(i / inner_b) % outer_b], u = a[i];
    /* op codes: coexec.layers.BINARY_OPS, passed as -D BINARY_<NAME>=<code> */
    y[i] = clamp(mul == BINARY_ADD ? u + v : mul == BINARY_MUL ? u * v : mul == BINARY_SUB ? u - v : u / v, lo, hi);
}

__kernel void unary(__global const float *x, __global float *y, int n0, int mode, float a, float c,
                    float lo, float hi) {
    /* modes (coexec.layers.UNARY_MODES, passed as -D UNARY_<NAME>=<code>): clamp(x, lo, hi)
       (Relu, Clip); x * clamp(a * x + c, 0, 1) (HardSwish); sigmoid; clamp(a * x + c, 0, 1)
       (HardSigmoid); erf; GELU (erf form); every result then clamped to [lo, hi] */
    int i = get_global_id(0) + n0;
    float v = x[i], r;
    if (mode == UNARY_HARDSWISH) r = v * clamp(a * v + c, 0.0f, 1.0f);
    else if (mode == UNARY_SIGMOID) r = 1.0f / (1.0f + exp(-v));
    else if (mode == UNARY_HARDSIGMOID) r = clamp(a * v + c, 0.0f, 1.0f);
    else if (mode == UNARY_ERF) r = erf(v);
    else if (mode == UNARY_GELU) r = 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
    else r = v;
    y[i] = clamp(r, lo, hi);
}

__kernel void transpose6(__global const float *x, __global float *y, int d1, int d2, int d3, int d4, int d5,
                         int s0, int s1, int s2, int s3, int s4, int s5) {
    /* y (dims d0..d5, row-major) = x permuted: output coordinate j reads x at stride sj */
    int i = get_global_id(0), r = i;
    int c5 = r % d5; r /= d5;
    int c4 = r % d4; r /= d4;
    int c3 = r % d3; r /= d3;
    int c2 = r % d2; r /= d2;
    int c1 = r % d1; r /= d1;
    y[i] = x[r * s0 + c1 * s1 + c2 * s2 + c3 * s3 + c4 * s4 + c5 * s5];
}
