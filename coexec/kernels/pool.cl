__kernel void pool2d(__global const float *x, __global float *y, int H, int W, int HO, int WO,
                     int k, int s, int p, int c0, int avg) {
    /* max pool, or average pool over the window's valid inputs (ONNX count_include_pad=0) */
    int ow = get_global_id(0), oh = get_global_id(1), c = get_global_id(2) + c0;
    __global const float *xc = x + c * H * W;
    float acc = avg ? 0.0f : -INFINITY;
    int n = 0;
    for (int i = 0; i < k; ++i) {
        int ih = oh * s - p + i;
        if (ih < 0 || ih >= H) continue;
        for (int j = 0; j < k; ++j) {
            int iw = ow * s - p + j;
            if (iw < 0 || iw >= W) continue;
            float v = xc[ih * W + iw];
            acc = avg ? acc + v : fmax(acc, v);
            ++n;
        }
    }
    y[(c * HO + oh) * WO + ow] = avg ? acc / (float)max(n, 1) : acc;
}

__kernel void global_avg(__global const float *x, __global float *y, int HW, int c0) {
    int c = get_global_id(0) + c0;
    __global const float *xc = x + c * HW;
    float acc = 0.0f;
    for (int i = 0; i < HW; ++i) acc += xc[i];
    y[c] = acc / (float)HW;
}
