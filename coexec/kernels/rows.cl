__kernel void softmax_rows(__global const float *x, __global float *y, int D, int r0) {
    /* softmax over the last axis, one row per work-item */
    __global const float *xr = x + (get_global_id(0) + r0) * D;
    __global float *yr = y + (get_global_id(0) + r0) * D;
    float m = -INFINITY, s = 0.0f;
    for (int i = 0; i < D; ++i) m = fmax(m, xr[i]);
    for (int i = 0; i < D; ++i) { float e = exp(xr[i] - m); yr[i] = e; s += e; }
    float inv = 1.0f / s;
    for (int i = 0; i < D; ++i) yr[i] *= inv;
}

__kernel void layernorm_rows(__global const float *x, __global const float *g, __global const float *b,
                             __global float *y, int D, int r0, float eps) {
    /* layer normalisation over the last axis (scale g, bias b), one row per work-item */
    __global const float *xr = x + (get_global_id(0) + r0) * D;
    __global float *yr = y + (get_global_id(0) + r0) * D;
    float mean = 0.0f, var = 0.0f;
    for (int i = 0; i < D; ++i) mean += xr[i];
    mean /= (float)D;
    for (int i = 0; i < D; ++i) { float d = xr[i] - mean; var += d * d; }
    float inv = rsqrt(var / (float)D + eps);
    for (int i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
}

__kernel void linear16(__global const float16 *x, __global const float16 *w, __global const float *b,
                       __global float *y, int IN16, int n0, float lo, float hi) {
    /* one output per work-item, weights row-major [OUT, IN], 16-wide dot products */
    int n = get_global_id(0) + n0;
    float16 acc = (float16)(0.0f);
    for (int i = 0; i < IN16; ++i) acc += x[i] * w[n * IN16 + i];
    float8 e = acc.lo + acc.hi;
    float4 h = e.lo + e.hi;
    y[n] = clamp(b[n] + h.x + h.y + h.z + h.w, lo, hi);
}
