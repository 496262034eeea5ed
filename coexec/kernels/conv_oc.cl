/* Direct convolution computing OC output channels per work-item (built once per OC, -D OC=4
   and -D OC=8: the kernels conv2d_oc4 and conv2d_oc8): each input value is loaded once for OC
   FMAs. For output channel counts that are a multiple of OC only. */
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

__kernel void CAT(conv2d_oc, OC)(__global const float *x, __global const float *w, __global const float *b,
                                 __global float *y, int C, int H, int W, int K, int HO, int WO,
                                 int k, int s, int p, int co0, float lo, float hi) {
    int ow = get_global_id(0), oh = get_global_id(1), oc = co0 + OC * get_global_id(2);
    if (ow >= WO || oh >= HO) return;
    float a[OC];
    #pragma unroll
    for (int u = 0; u < OC; ++u) a[u] = b[oc + u];
    int kk = k * k, cs = C * kk;
    for (int c = 0; c < C; ++c) {
        for (int i = 0; i < k; ++i) {
            int ih = oh * s - p + i;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < k; ++j) {
                int iw = ow * s - p + j;
                float xv = (iw >= 0 && iw < W) ? x[(c * H + ih) * W + iw] : 0.0f;
                __global const float *wp = w + oc * cs + c * kk + i * k + j;
                #pragma unroll
                for (int u = 0; u < OC; ++u) a[u] += xv * wp[u * cs];
            }
        }
    }
    int o = HO * WO, q = oh * WO + ow;
    #pragma unroll
    for (int u = 0; u < OC; ++u) y[(oc + u) * o + q] = clamp(a[u], lo, hi);
}
