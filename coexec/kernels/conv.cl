__kernel void conv2d_nchw(__global const float *x, __global const float *w, __global const float *b,
                          __global float *y, int C, int H, int W, int K, int HO, int WO,
                          int k, int s, int p, int co0, float lo, float hi) {
    int ow = get_global_id(0), oh = get_global_id(1), oc = get_global_id(2) + co0;
    if (ow >= WO || oh >= HO) return;
    float acc = b[oc];
    for (int c = 0; c < C; ++c) {
        for (int i = 0; i < k; ++i) {
            int ih = oh * s - p + i;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < k; ++j) {
                int iw = ow * s - p + j;
                if (iw < 0 || iw >= W) continue;
                acc += x[(c * H + ih) * W + iw] * w[((oc * C + c) * k + i) * k + j];
            }
        }
    }
    y[(oc * HO + oh) * WO + ow] = clamp(acc, lo, hi);
}

__kernel void conv_v8(__global const float *xp, __global const float *w, __global const float *b,
                      __global float *y, int C, int HP, int WP, int K, int HO, int WO, int k, int co0,
                      float lo, float hi) {
    /* stride-1 conv over a zero-padded input: 8 output pixels (a float8 along W) x 4 output
       channels per work-item; explicit vectors are what PoCL's CPU target vectorises best */
    int owb = 8 * get_global_id(0), oh = get_global_id(1), oc = co0 + 4 * get_global_id(2);
    float8 a0 = (float8)(b[oc]), a1 = (float8)(b[oc + 1]), a2 = (float8)(b[oc + 2]), a3 = (float8)(b[oc + 3]);
    int kk = k * k, cs = C * kk;
    for (int c = 0; c < C; ++c) {
        for (int i = 0; i < k; ++i) {
            __global const float *row = xp + (c * HP + oh + i) * WP + owb;
            __global const float *wr = w + oc * cs + c * kk + i * k;
            for (int j = 0; j < k; ++j) {
                float8 xv = vload8(0, row + j);
                a0 += xv * wr[j]; a1 += xv * wr[cs + j]; a2 += xv * wr[2 * cs + j]; a3 += xv * wr[3 * cs + j];
            }
        }
    }
    a0 = clamp(a0, lo, hi); a1 = clamp(a1, lo, hi); a2 = clamp(a2, lo, hi); a3 = clamp(a3, lo, hi);
    int o = HO * WO;
    __global float *y0 = y + oc * o + oh * WO + owb;
    if (owb + 8 <= WO) {
        vstore8(a0, 0, y0); vstore8(a1, 0, y0 + o); vstore8(a2, 0, y0 + 2 * o); vstore8(a3, 0, y0 + 3 * o);
    } else {
        float t0[8], t1[8], t2[8], t3[8];
        vstore8(a0, 0, t0); vstore8(a1, 0, t1); vstore8(a2, 0, t2); vstore8(a3, 0, t3);
        for (int q = 0; owb + q < WO; ++q) {
            y0[q] = t0[q]; y0[o + q] = t1[q]; y0[2 * o + q] = t2[q]; y0[3 * o + q] = t3[q];
        }
    }
}

__kernel void conv1x1_v8(__global const float *x, __global const float *w, __global const float *b,
                         __global float *y, int C, int HW, int K, int co0, float lo, float hi) {
    /* 1x1 stride-1 unpadded conv as a GEMM over flattened pixels: 8 pixels (a float8 of
       the H*W row, so narrow maps waste nothing) x 4 output channels per work-item */
    int p = 8 * get_global_id(0), oc = co0 + 4 * get_global_id(2);
    float8 a0 = (float8)(b[oc]), a1 = (float8)(b[oc + 1]), a2 = (float8)(b[oc + 2]), a3 = (float8)(b[oc + 3]);
    __global const float *w0 = w + oc * C;
    int n = min(8, HW - p);
    for (int c = 0; c < C; ++c) {
        float8 xv;
        if (n == 8) {
            xv = vload8(0, x + c * HW + p);
        } else {  /* the tail of the map: no load past the buffer's end */
            float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int q = 0; q < n; ++q) t[q] = x[c * HW + p + q];
            xv = vload8(0, t);
        }
        a0 += xv * w0[c]; a1 += xv * w0[C + c]; a2 += xv * w0[2 * C + c]; a3 += xv * w0[3 * C + c];
    }
    a0 = clamp(a0, lo, hi); a1 = clamp(a1, lo, hi); a2 = clamp(a2, lo, hi); a3 = clamp(a3, lo, hi);
    __global float *y0 = y + oc * HW + p;
    if (n == 8) {
        vstore8(a0, 0, y0); vstore8(a1, 0, y0 + HW); vstore8(a2, 0, y0 + 2 * HW); vstore8(a3, 0, y0 + 3 * HW);
    } else {
        float t0[8], t1[8], t2[8], t3[8];
        vstore8(a0, 0, t0); vstore8(a1, 0, t1); vstore8(a2, 0, t2); vstore8(a3, 0, t3);
        for (int q = 0; q < n; ++q) {
            y0[q] = t0[q]; y0[HW + q] = t1[q]; y0[2 * HW + q] = t2[q]; y0[3 * HW + q] = t3[q];
        }
    }
}

/* Zero-padded copy of a CHW input in the layout conv_v8 reads (rows of wp floats). */
__kernel void pad_chw(__global const float *x, __global float *xp, int h, int w, int pad, int hp, int wp) {
    int xx = get_global_id(0), yy = get_global_id(1), ci = get_global_id(2);
    int sy = yy - pad, sx = xx - pad;
    xp[(ci * hp + yy) * wp + xx] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? x[(ci * h + sy) * w + sx] : 0.0f;
}

__kernel void dwconv(__global const float *x, __global const float *w, __global const float *b,
                     __global float *y, int H, int W, int HO, int WO, int k, int s, int p, int c0,
                     float lo, float hi) {
    /* depthwise conv (one filter per channel, weights [C, 1, k, k]) */
    int ow = get_global_id(0), oh = get_global_id(1), c = get_global_id(2) + c0;
    float acc = b[c];
    __global const float *xc = x + c * H * W, *wc = w + c * k * k;
    for (int i = 0; i < k; ++i) {
        int ih = oh * s - p + i;
        if (ih < 0 || ih >= H) continue;
        for (int j = 0; j < k; ++j) {
            int iw = ow * s - p + j;
            if (iw >= 0 && iw < W) acc += xc[ih * W + iw] * wc[i * k + j];
        }
    }
    y[(c * HO + oh) * WO + ow] = clamp(acc, lo, hi);
}
