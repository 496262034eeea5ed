"""Co-execution runtime: a CPU executor and an OpenCL executor sharing SVM memory.

Tensors live in fine-grained shared virtual memory (``svm_empty`` with
``SVM_FINE_GRAIN_BUFFER``): the OpenCL kernel writes its output channels, the CPU
executor writes the others into the same buffer, and nothing is copied. The OpenCL side
signals completion by an atomic store of a sequence number into an SVM flag (a tiny
trailing kernel); the CPU polls that flag (spin with bounded backoff, with a timeout)
instead of ``clFinish``/``clWaitForEvents``. The event-wait and finish paths stay as
baselines (``sync="event" | "finish"``).

Executors are bound to their own cores: the OpenCL device's worker threads (PoCL's
pthread device here; any OpenCL GPU elsewhere) are created while the process is pinned
to the GPU core set, and the CPU executor pins its thread to the CPU core set.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from oplat.errors import OplatError


class RuntimeUnavailable(OplatError):
    """No OpenCL device, no SVM, or a kernel that does not build."""


class SyncTimeout(OplatError):
    """A polled flag never arrived: the device failed or hung."""


@contextlib.contextmanager
def pinned(cores: Sequence[int] | None) -> Iterator[None]:
    """Run the block on ``cores`` (threads started inside inherit them); the caller's
    affinity comes back after it. ``None`` or empty: left as it is."""
    if not cores:
        yield
        return
    prev = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cores))
    try:
        yield
    finally:
        os.sched_setaffinity(0, prev)


# a gate gives up after this many polls of its release counter (seconds on a CPU device):
# a host that died mid-run leaves the device spinning this long at most, never for ever
GATE_SPINS = 2_000_000_000

KERNELS = r"""
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

__kernel void conv2d_oc8(__global const float *x, __global const float *w, __global const float *b,
                         __global float *y, int C, int H, int W, int K, int HO, int WO,
                         int k, int s, int p, int co0, float lo, float hi) {
    /* 8 output channels per work-item: each input value loaded once for 8 FMAs */
    int ow = get_global_id(0), oh = get_global_id(1), oc = co0 + 8 * get_global_id(2);
    if (ow >= WO || oh >= HO) return;
    float a0 = b[oc], a1 = b[oc + 1], a2 = b[oc + 2], a3 = b[oc + 3];
    float a4 = b[oc + 4], a5 = b[oc + 5], a6 = b[oc + 6], a7 = b[oc + 7];
    int kk = k * k, cs = C * kk;
    for (int c = 0; c < C; ++c) {
        for (int i = 0; i < k; ++i) {
            int ih = oh * s - p + i;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < k; ++j) {
                int iw = ow * s - p + j;
                float xv = (iw >= 0 && iw < W) ? x[(c * H + ih) * W + iw] : 0.0f;
                __global const float *wp = w + oc * cs + c * kk + i * k + j;
                a0 += xv * wp[0]; a1 += xv * wp[cs]; a2 += xv * wp[2 * cs]; a3 += xv * wp[3 * cs];
                a4 += xv * wp[4 * cs]; a5 += xv * wp[5 * cs]; a6 += xv * wp[6 * cs]; a7 += xv * wp[7 * cs];
            }
        }
    }
    int o = HO * WO, q = oh * WO + ow;
    a0 = clamp(a0, lo, hi); a1 = clamp(a1, lo, hi); a2 = clamp(a2, lo, hi); a3 = clamp(a3, lo, hi);
    a4 = clamp(a4, lo, hi); a5 = clamp(a5, lo, hi); a6 = clamp(a6, lo, hi); a7 = clamp(a7, lo, hi);
    y[oc * o + q] = a0; y[(oc + 1) * o + q] = a1; y[(oc + 2) * o + q] = a2; y[(oc + 3) * o + q] = a3;
    y[(oc + 4) * o + q] = a4; y[(oc + 5) * o + q] = a5; y[(oc + 6) * o + q] = a6; y[(oc + 7) * o + q] = a7;
}

__kernel void conv2d_oc4(__global const float *x, __global const float *w, __global const float *b,
                         __global float *y, int C, int H, int W, int K, int HO, int WO,
                         int k, int s, int p, int co0, float lo, float hi) {
    /* 4 output channels per work-item: for channel counts that are a multiple of 4 only */
    int ow = get_global_id(0), oh = get_global_id(1), oc = co0 + 4 * get_global_id(2);
    if (ow >= WO || oh >= HO) return;
    float a0 = b[oc], a1 = b[oc + 1], a2 = b[oc + 2], a3 = b[oc + 3];
    int kk = k * k, cs = C * kk;
    for (int c = 0; c < C; ++c) {
        for (int i = 0; i < k; ++i) {
            int ih = oh * s - p + i;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < k; ++j) {
                int iw = ow * s - p + j;
                float xv = (iw >= 0 && iw < W) ? x[(c * H + ih) * W + iw] : 0.0f;
                __global const float *wp = w + oc * cs + c * kk + i * k + j;
                a0 += xv * wp[0]; a1 += xv * wp[cs]; a2 += xv * wp[2 * cs]; a3 += xv * wp[3 * cs];
            }
        }
    }
    int o = HO * WO, q = oh * WO + ow;
    y[oc * o + q] = clamp(a0, lo, hi); y[(oc + 1) * o + q] = clamp(a1, lo, hi);
    y[(oc + 2) * o + q] = clamp(a2, lo, hi); y[(oc + 3) * o + q] = clamp(a3, lo, hi);
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

__kernel void binary(__global const float *a, __global const float *b, __global float *y, int inner_b,
                     int outer_b, int n0, int mul, float lo, float hi) {
    /* y = a + b or a * b over a's elements [n0, ...); element i reads b[(i / inner_b) % outer_b]:
       b of a's shape (1, size), one value per channel (the channel's element count, channels:
       squeeze-excite scales), one per last-axis position (1, its length: a bias), a scalar (1, 1) */
    int i = get_global_id(0) + n0;
    float v = b[(i / inner_b) % outer_b], u = a[i];
    /* op: 0 a + b, 1 a * b, 2 a - b, 3 a / b */
    y[i] = clamp(mul == 0 ? u + v : mul == 1 ? u * v : mul == 2 ? u - v : u / v, lo, hi);
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

__kernel void unary(__global const float *x, __global float *y, int n0, int mode, float a, float c,
                    float lo, float hi) {
    /* mode 0: clamp(x, lo, hi) (Relu, Clip); 1: x * clamp(a * x + c, 0, 1) (HardSwish);
       2: sigmoid; 3: clamp(a * x + c, 0, 1) (HardSigmoid); 4: erf; 5: GELU (erf form) */
    int i = get_global_id(0) + n0;
    float v = x[i], r;
    if (mode == 1) r = v * clamp(a * v + c, 0.0f, 1.0f);
    else if (mode == 2) r = 1.0f / (1.0f + exp(-v));
    else if (mode == 3) r = clamp(a * v + c, 0.0f, 1.0f);
    else if (mode == 4) r = erf(v);
    else if (mode == 5) r = 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
    else r = v;
    y[i] = clamp(r, lo, hi);
}

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

__kernel void matmul_rows(__global const float *a, __global const float *bm, __global const float *bias,
                          __global float *c, int M, int K, int N, int b_stride, int has_bias, int r0,
                          float lo, float hi) {
    /* C[r, n] = sum_k A[r, k] B[r / M][k, n] (+ bias[n]) over rows [r0, ...) of A
       (rows of all batches in a row); b_stride 0: one B (weights) for every row */
    int n = get_global_id(0), r = get_global_id(1) + r0;
    __global const float *ar = a + r * K, *bb = bm + (r / M) * b_stride + n;
    float acc = has_bias ? bias[n] : 0.0f;
    for (int q = 0; q < K; ++q) acc += ar[q] * bb[q * N];
    c[r * N + n] = clamp(acc, lo, hi);
}

__kernel void matmul_rows8(__global const float *a, __global const float *bm, __global const float *bias,
                           __global float *c, int M, int K, int N, int b_stride, int has_bias, int r0, int r1,
                           float lo, float hi) {
    /* matmul_rows for N a multiple of 8: 8 consecutive columns of 2 rows per work-item
       (the second when it is below r1 and reads the same B) */
    int n = 8 * get_global_id(0), r = 2 * get_global_id(1) + r0;
    int two = r + 1 < r1 && (b_stride == 0 || (r + 1) % M != 0);
    __global const float *a0 = a + r * K, *a1 = a0 + K, *bb = bm + (r / M) * b_stride + n;
    float8 acc0 = has_bias ? vload8(0, bias + n) : (float8)(0.0f), acc1 = acc0;
    if (two) {
        for (int q = 0; q < K; ++q) {
            float8 bv = vload8(0, bb + q * N);
            acc0 += a0[q] * bv;
            acc1 += a1[q] * bv;
        }
        vstore8(clamp(acc1, lo, hi), 0, c + (r + 1) * N + n);
    } else {
        for (int q = 0; q < K; ++q) acc0 += a0[q] * vload8(0, bb + q * N);
    }
    vstore8(clamp(acc0, lo, hi), 0, c + r * N + n);
}

__kernel void set_flag(__global volatile int *flag, int value) {
    atomic_xchg(flag, value);
}

/* Zero-padded copy of a CHW input in the layout conv_v8 reads (rows of wp floats). */
__kernel void pad_chw(__global const float *x, __global float *xp, int h, int w, int pad, int hp, int wp) {
    int xx = get_global_id(0), yy = get_global_id(1), ci = get_global_id(2);
    int sy = yy - pad, sx = xx - pad;
    xp[(ci * hp + yy) * wp + xx] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? x[(ci * h + sy) * w + sx] : 0.0f;
}

/* A gate in the in-order queue: the device spins (bounded) until the host's release
   counter ``go`` reaches ``need`` (the CPU work the next kernel reads is done), so the
   kernel behind it starts within a microsecond of the host's store instead of after a
   wake-up; a gate that gives up records ``need`` in ``timed_out``. */
__kernel void gate(__global volatile int *go, int need, int max_spins, __global volatile int *timed_out) {
    int i = 0;
    for (; i < max_spins && atomic_add(go, 0) < need; i++) { }
    if (i >= max_spins) atomic_xchg(timed_out, need);
}

/* The device's idle loop between inferences: spin (bounded) until the host stores a
   non-zero ``go``, consume it and end, so the work queued behind it starts at once
   instead of after a wake-up of the device's thread. */
__kernel void idle_gate(__global volatile int *go, int max_spins) {
    for (int i = 0; i < max_spins && atomic_add(go, 0) == 0; i++) { }
    atomic_xchg(go, 0);
}

/* Notification-latency probe: announce the start, spin (bounded) until the host
   stores ``value`` into ``go``, then finish by setting ``done``. */
__kernel void wait_go(__global volatile int *go, __global volatile int *started,
                      __global volatile int *done, int value, int max_spins) {
    atomic_xchg(started, value);
    for (int i = 0; i < max_spins && atomic_add(go, 0) != value; i++) { }
    atomic_xchg(done, value);
}
"""


# kinds computed per channel (rows for softmax / layernorm): a part of channels [c0, c1)
# reads only those channels of its input
CHANNELWISE = ("dwconv", "maxpool", "avgpool", "gap", "add", "mul", "sub", "div", "unary", "softmax", "layernorm",
               "matmul", "transpose")
# how an Add/Mul's second operand broadcasts (its ``mode``): "auto" is the first's shape or
# one value per channel, told apart by size; "last": one value per last-axis position
BROADCAST = {"auto": 0, "last": 2, "scalar": 3}
# unary modes (the ``unary`` kernel): clamp (Relu, Clip; bounds in lo/hi), HardSwish, Sigmoid, HardSigmoid,
# Erf, GELU (erf form)
UNARY_MODES = {"clamp": 0, "hardswish": 1, "sigmoid": 2, "hardsigmoid": 3, "erf": 4, "gelu": 5}
# element-wise binary ops (the ``binary`` kernel's op): the second operand on the right
BINARY_OPS = {"add": 0, "mul": 1, "sub": 2, "div": 3}


@dataclass
class LayerSpec:
    """One layer with its weights; ``lo``/``hi`` clamp the output (a fused Relu is
    ``lo=0``, Relu6 / Clip ``lo=0, hi=6``).

    Kinds: ``conv`` (NCHW, square kernel), ``linear`` (one row), ``dwconv`` (weights
    [C, 1, k, k]), ``maxpool`` / ``avgpool`` (window ``k``), ``gap`` (global average),
    ``add`` / ``mul`` / ``sub`` / ``div`` (``w`` is the second operand, broadcast by
    ``mode`` of :data:`BROADCAST`), ``unary`` (``mode`` of :data:`UNARY_MODES`, parameters ``alpha``/``beta``),
    ``softmax`` and ``layernorm`` (last axis; ``w``/``b`` scale and bias, ``alpha`` the
    epsilon), ``matmul`` (rows of the input times ``w`` [K, ``cols``], plus ``b`` when it
    has ``cols`` values; ``w`` of another size is a second operand of one [K, cols]
    matrix per batch), ``transpose`` (``perm``, whole tensors). Kinds without weights give
    ``channels`` (rows for softmax, layernorm and matmul)."""

    kind: str
    w: np.ndarray
    b: np.ndarray
    stride: int = 1
    pad: int = 0
    lo: float = -np.inf
    hi: float = np.inf
    k: int = 0
    mode: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    channels: int = 0
    cols: int = 0
    perm: tuple[int, ...] = ()

    @property
    def out_channels(self) -> int:
        return int(self.channels or self.w.shape[0])

    def out_shape(self, x_shape: Sequence[int]) -> tuple[int, ...]:
        if self.kind == "linear":
            return (self.out_channels,)
        if self.kind == "gap":
            return (int(x_shape[-3]), 1, 1)
        if self.kind == "matmul":
            return (*(int(d) for d in x_shape[:-1]), self.cols)
        if self.kind == "transpose":
            return tuple(int(x_shape[p]) for p in self.perm)
        if self.kind not in ("conv", "dwconv", "maxpool", "avgpool"):
            return tuple(int(d) for d in x_shape)
        c, h, w = x_shape[-3:]
        k = self.k if self.kind.endswith("pool") else self.w.shape[-1]
        return (self.out_channels if self.kind == "conv" else int(c), (h + 2 * self.pad - k) // self.stride + 1,
                (w + 2 * self.pad - k) // self.stride + 1)


def transpose_args(x_shape: Sequence[int], perm: Sequence[int]) -> tuple[list[int], list[int]]:
    """The ``transpose6`` kernel's output dims and, per output axis, the input's stride
    (both padded in front to six axes)."""
    if len(x_shape) > 6:
        raise RuntimeUnavailable(f"transpose of {len(x_shape)} axes (the kernel takes up to 6)")
    strides = [int(np.prod(x_shape[i + 1:], dtype=np.int64)) for i in range(len(x_shape))]
    pad = 6 - len(x_shape)
    return [1] * pad + [int(x_shape[p]) for p in perm], [0] * pad + [strides[p] for p in perm]


def _elements(a) -> int:
    """Float32 elements of an SVM array or of a plain device buffer (which counts bytes)."""
    return a.size if isinstance(a, np.ndarray) else a.size // 4


def max_rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference over the reference's largest magnitude (NaN if ``got``
    holds NaN, so a check ``err <= tol`` fails on it)."""
    got, ref = np.asarray(got), np.asarray(ref)
    return float(np.abs(got.reshape(ref.shape) - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def inner_size(layer: LayerSpec, x_shape: Sequence[int]) -> int:
    """Elements of the input per channel (per row for softmax / layernorm)."""
    if layer.kind in ("softmax", "layernorm", "matmul"):
        return int(x_shape[-1])
    return int(np.prod(x_shape[1:], dtype=np.int64)) if len(x_shape) > 1 else 1


def is_pointwise(layer: LayerSpec) -> bool:
    """A 1x1 stride-1 unpadded conv: runs as a GEMM over flattened pixels (``conv1x1_v8``)."""
    return layer.kind == "conv" and layer.w.shape[-1] == 1 and layer.stride == 1 and layer.pad == 0


def wants_padded_input(layer: LayerSpec) -> bool:
    """Whether the layer's kernel reads a zero-padded copy of its input (the vectorised
    stride-1 conv ``conv_v8``; launches make the copy on the device first)."""
    return layer.kind == "conv" and layer.stride == 1 and layer.out_channels % 4 == 0 and not is_pointwise(layer)


def padded_dims(h: int, w: int, pad: int) -> tuple[int, int]:
    """(rows, row length) of a padded CHW channel for ``conv_v8``: ``pad`` on every side
    plus 8 floats of slack for its 8-wide loads past a row's end (the buffer adds 16)."""
    return h + 2 * pad, w + 2 * pad + 8


class OclExecutor:
    """OpenCL side: SVM buffers, conv/linear kernels, flag signalling."""

    def __init__(self, cores: Sequence[int] | None = None, require_svm: bool = True) -> None:
        """The first OpenCL device with fine-grained SVM buffers (or the one whose device or
        platform name contains ``$COEXEC_OPENCL_DEVICE``). ``require_svm=False`` accepts a
        device without them, for running kernels on plain buffers (``buffer``): the kernel
        check of another machine's device; co-execution needs the shared memory."""
        try:
            import pyopencl as cl
        except ImportError as e:  # pragma: no cover - dependency declared
            raise RuntimeUnavailable(f"pyopencl not importable ({e})") from None
        self.cl = cl
        if cores:
            # PoCL's CPU device: one worker thread per core it may use (read at platform init)
            os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(len(cores)))
        with pinned(cores):  # device worker threads inherit this
            try:
                platforms = cl.get_platforms()
            except cl.Error:
                platforms = []
            devices = [d for p in platforms for d in p.get_devices()]
            want = os.environ.get("COEXEC_OPENCL_DEVICE", "").lower()
            if want:
                devices = [d for d in devices if want in f"{d.name} {d.platform.name}".lower()]
            if not devices:
                raise RuntimeUnavailable("no OpenCL device" + (f" matching {want!r}" if want else "")
                                         + " (install pocl-opencl-icd, or run with --cpu-only)")
            fine = cl.device_svm_capabilities.FINE_GRAIN_BUFFER
            dev = next((d for d in devices if getattr(d, "svm_capabilities", 0) & fine), devices[0])
            caps = getattr(dev, "svm_capabilities", 0)
            self.fine_svm = bool(caps & fine)
            if require_svm and not self.fine_svm:
                raise RuntimeUnavailable(f"{dev.name}: no fine-grained SVM buffers")
            self.device = dev
            self.ctx = cl.Context([dev])
            self.queue = cl.CommandQueue(self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
            try:
                self.prog = cl.Program(self.ctx, KERNELS).build()
            except cl.RuntimeError as e:
                raise RuntimeUnavailable(f"OpenCL kernel build failed:\n{e}") from None
            # one kernel object each: retrieving from the program creates a new kernel every time
            self._shared = {name: cl.Kernel(self.prog, name) for name in (
                "conv2d_nchw", "conv2d_oc8", "conv2d_oc4", "conv_v8", "conv1x1_v8", "linear16", "pad_chw",
                "dwconv", "pool2d", "global_avg", "binary", "unary", "softmax_rows", "layernorm_rows", "matmul_rows",
                "matmul_rows8", "transpose6")}
            self.k_flag = cl.Kernel(self.prog, "set_flag")
            self.k_wait_go = cl.Kernel(self.prog, "wait_go")
            if self.fine_svm:
                self._warm()
        self.atomics = bool(caps & cl.device_svm_capabilities.ATOMICS)

    def _warm(self) -> None:
        f = self.svm((1,), np.int32)
        self.signal(f, 0)
        self.queue.finish()

    def _mem(self, a):
        """A kernel argument for ``a``: an SVM array, or a plain buffer as it is."""
        return a if isinstance(a, self.cl.MemoryObjectHolder) else self.cl.SVM(a)

    def buffer(self, a: np.ndarray):
        """A plain device buffer holding a copy of ``a`` (devices without fine-grained SVM)."""
        mf = self.cl.mem_flags
        return self.cl.Buffer(self.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.ascontiguousarray(a))

    def svm(self, shape: Sequence[int], dtype=np.float32) -> np.ndarray:
        """A host-visible numpy array in fine-grained SVM."""
        flags = self.cl.svm_mem_flags.READ_WRITE | self.cl.svm_mem_flags.SVM_FINE_GRAIN_BUFFER
        return self.cl.svm_empty(self.ctx, flags, tuple(shape), dtype)

    def padded_buffer(self, x_shape: Sequence[int], pad: int) -> np.ndarray:
        """A zeroed SVM buffer in the padded layout ``conv_v8`` reads (see :func:`padded_dims`)."""
        c, h, w = x_shape[-3:]
        hp, wp = padded_dims(h, w, pad)
        buf = self.svm((c * hp * wp + 16,))
        buf[...] = 0
        return buf

    def _pad_call(self, x, xpad, x_shape: Sequence[int], pad: int) -> tuple[str, tuple, tuple[int, ...]]:
        c, h, w = x_shape[-3:]
        hp, wp = padded_dims(h, w, pad)
        return "pad_chw", (self._mem(x), self._mem(xpad), np.int32(h), np.int32(w), np.int32(pad), np.int32(hp),
                           np.int32(wp)), (wp, hp, c)

    def _layer_call(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int, x_shape: Sequence[int],
                    xpad=None) -> tuple[str, tuple, tuple[int, ...]]:
        """Kernel name, arguments and global size computing channels [c0, c1) of ``layer``."""
        clamp = (np.float32(layer.lo), np.float32(layer.hi))
        if layer.kind in CHANNELWISE:
            return self._other_call(layer, x, w, b, y, c0, c1, x_shape)
        if layer.kind == "linear":
            if x_shape[-1] % 16:
                raise RuntimeUnavailable(f"linear input size {x_shape[-1]} is not a multiple of 16")
            return "linear16", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(x_shape[-1] // 16),
                                np.int32(c0), *clamp), (c1 - c0,)
        c, h, wd = x_shape[-3:]
        _, ho, wo = layer.out_shape(x_shape)
        k = layer.w.shape[-1]
        if is_pointwise(layer) and (c1 - c0) % 4 == 0:
            return "conv1x1_v8", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(c), np.int32(h * wd),
                                  np.int32(layer.out_channels), np.int32(c0), *clamp), ((h * wd + 7) // 8, 1,
                                                                                        (c1 - c0) // 4)
        if xpad is not None and layer.stride == 1 and (c1 - c0) % 4 == 0:
            hp, wp = padded_dims(h, wd, layer.pad)
            return "conv_v8", (self._mem(xpad), self._mem(w), self._mem(b), self._mem(y), np.int32(c), np.int32(hp),
                               np.int32(wp), np.int32(layer.out_channels), np.int32(ho), np.int32(wo),
                               np.int32(k), np.int32(c0), *clamp), ((wo + 7) // 8, ho, (c1 - c0) // 4)
        block = 8 if (c1 - c0) % 8 == 0 else 4 if (c1 - c0) % 4 == 0 else 1
        return {8: "conv2d_oc8", 4: "conv2d_oc4", 1: "conv2d_nchw"}[block], (
            self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(c), np.int32(h), np.int32(wd),
            np.int32(layer.out_channels), np.int32(ho), np.int32(wo), np.int32(k), np.int32(layer.stride),
            np.int32(layer.pad), np.int32(c0), *clamp), (wo, ho, (c1 - c0) // block)

    def _other_call(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int,
                    x_shape: Sequence[int]) -> tuple[str, tuple, tuple[int, ...]]:
        """The kernel call of the kinds other than dense conv and linear (channels [c0, c1))."""
        kind, n = layer.kind, c1 - c0
        clamp = (np.float32(layer.lo), np.float32(layer.hi))
        inner = inner_size(layer, x_shape)
        if kind in ("dwconv", "maxpool", "avgpool"):
            _, h, wd = x_shape[-3:]
            _, ho, wo = layer.out_shape(x_shape)
            geo = (np.int32(h), np.int32(wd), np.int32(ho), np.int32(wo))
            if kind == "dwconv":
                return "dwconv", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), *geo, np.int32(layer.w.shape[-1]),
                                  np.int32(layer.stride), np.int32(layer.pad), np.int32(c0), *clamp), (wo, ho, n)
            return "pool2d", (self._mem(x), self._mem(y), *geo, np.int32(layer.k), np.int32(layer.stride),
                              np.int32(layer.pad), np.int32(c0), np.int32(kind == "avgpool")), (wo, ho, n)
        if kind == "gap":
            return "global_avg", (self._mem(x), self._mem(y), np.int32(inner), np.int32(c0)), (n,)
        if kind == "transpose":  # whole tensors only (no channel range)
            dims, strides = transpose_args(x_shape, layer.perm)
            return "transpose6", (self._mem(x), self._mem(y), *(np.int32(d) for d in dims[1:]),
                                  *(np.int32(t) for t in strides)), (int(np.prod(x_shape)),)
        if kind in BINARY_OPS:
            total = int(np.prod(x_shape))
            if layer.mode == BROADCAST["last"]:
                inner_b, outer_b = 1, int(x_shape[-1])
            elif layer.mode == BROADCAST["scalar"]:
                inner_b, outer_b = 1, 1
            else:  # the second operand's size says which
                inner_b, outer_b = (1, total) if _elements(w) == total else (inner, int(x_shape[0]))
            return "binary", (self._mem(x), self._mem(w), self._mem(y), np.int32(inner_b), np.int32(outer_b),
                              np.int32(c0 * inner), np.int32(BINARY_OPS[kind]), *clamp), (n * inner,)
        if kind == "unary":
            return "unary", (self._mem(x), self._mem(y), np.int32(c0 * inner), np.int32(layer.mode), np.float32(layer.alpha),
                             np.float32(layer.beta), *clamp), (n * inner,)
        if kind == "softmax":
            return "softmax_rows", (self._mem(x), self._mem(y), np.int32(inner), np.int32(c0)), (n,)
        if kind == "matmul":
            m, kk, cols = int(x_shape[-2]) if len(x_shape) > 1 else 1, inner, layer.cols
            batched = _elements(w) != kk * cols  # one [K, cols] matrix per batch, not weights
            args = (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(m), np.int32(kk), np.int32(cols),
                    np.int32(kk * cols if batched else 0), np.int32(_elements(b) == cols), np.int32(c0))
            if cols % 8 == 0 and (not batched or (m % 2 == 0 and c0 % 2 == 0)):  # no pair straddles a batch
                return "matmul_rows8", (*args, np.int32(c1), *clamp), (cols // 8, (n + 1) // 2)
            return "matmul_rows", (*args, *clamp), (cols, n)
        if kind == "layernorm":
            return "layernorm_rows", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(inner), np.int32(c0),
                                      np.float32(layer.alpha)), (n,)
        raise RuntimeUnavailable(f"no OpenCL kernel for layer kind {kind!r}")

    def run_buffers(self, layer: LayerSpec, x: np.ndarray, runs: int = 1) -> tuple[np.ndarray, float]:
        """Run ``layer`` whole on plain device buffers (no SVM: any OpenCL device) ``runs``
        times; its output and the median time of its kernels (device events, the padded
        copy included)."""
        xb, wb, bb = self.buffer(x), self.buffer(layer.w), self.buffer(layer.b)
        y = np.full(layer.out_shape(x.shape), np.nan, np.float32)
        yb = self.buffer(y)
        xpad, calls = None, []
        if wants_padded_input(layer):
            hp, wp = padded_dims(x.shape[-2], x.shape[-1], layer.pad)
            xpad = self.buffer(np.zeros(x.shape[-3] * hp * wp + 16, np.float32))
            calls.append(self._pad_call(xb, xpad, x.shape, layer.pad))
        calls.append(self._layer_call(layer, xb, wb, bb, yb, 0, layer.out_channels, x.shape, xpad))
        times = []
        for _ in range(max(runs, 1)):
            evs = [self._enqueue_call(c) for c in calls]
            evs[-1].wait()
            times.append((evs[-1].profile.end - evs[0].profile.start) * 1e-6)
        self.cl.enqueue_copy(self.queue, y, yb).wait()
        return y, float(np.median(times))

    def _enqueue_call(self, call: tuple[str, tuple, tuple[int, ...]]):
        name, args, size = call
        kern = self._shared[name]
        kern.set_args(*args)
        return self.cl.enqueue_nd_range_kernel(self.queue, kern, size, None)

    def enqueue_pad(self, x, xpad, x_shape: Sequence[int], pad: int):
        """Enqueue the device-side copy of CHW ``x`` into ``xpad`` (no host sync: the
        in-order queue runs it after ``x``'s producer and before the conv reading it)."""
        return self._enqueue_call(self._pad_call(x, xpad, x_shape, pad))

    def enqueue(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int, x_shape: Sequence[int], xpad=None):
        """Compute output channels [c0, c1) of ``layer`` into ``y`` (all SVM arrays)."""
        if c1 <= c0:
            return None
        return self._enqueue_call(self._layer_call(layer, x, w, b, y, c0, c1, x_shape, xpad))

    def signal(self, flag: np.ndarray, value: int):
        """Enqueue the trailing kernel that stores ``value`` into ``flag`` when work before it is done."""
        self.k_flag.set_args(self.cl.SVM(flag), np.int32(value))
        return self.cl.enqueue_nd_range_kernel(self.queue, self.k_flag, (1,), None)

    def prepare(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int, x_shape: Sequence[int], xpad=None,
                flag: np.ndarray | None = None, value: int = 0,
                gate: tuple[np.ndarray, int, np.ndarray] | None = None) -> "Launch":
        """The launch of channels [c0, c1) of ``layer`` (after the padded copy when ``xpad``
        is given; followed by storing ``value`` into ``flag`` when given) with every kernel
        argument set now: replaying it costs one enqueue per kernel and no argument setting
        (setting arguments through pyopencl costs ~20 us per call, more than the enqueue).
        ``gate=(go, need, timed_out)``: the launch first waits on the device until
        ``go[0] >= need`` (:data:`GATE_SPINS` at most)."""
        calls = []
        if gate is not None:
            go, need, timed_out = gate
            calls.append(("gate", (self.cl.SVM(go), np.int32(need), np.int32(GATE_SPINS), self.cl.SVM(timed_out)),
                          (1,)))
        if xpad is not None and wants_padded_input(layer):
            calls.append(self._pad_call(x, xpad, x_shape, layer.pad))
        if c1 > c0:
            calls.append(self._layer_call(layer, x, w, b, y, c0, c1, x_shape, xpad))
        main = len(calls) - 1
        if flag is not None:
            calls.append(("set_flag", (self.cl.SVM(flag), np.int32(value)), (1,)))
        items = []
        for name, args, size in calls:
            kern = self.cl.Kernel(self.prog, name)
            kern.set_args(*args)
            items.append((kern, size))
        return Launch(self.cl, self.queue, items, main)

    def flush(self) -> None:
        self.queue.flush()


class Launch:
    """Kernels with their arguments already set, enqueued in order by :meth:`enqueue`."""

    def __init__(self, cl, queue, items: list[tuple[Any, tuple[int, ...]]], main: int) -> None:
        self.cl, self.queue, self.items, self.main = cl, queue, items, main

    def enqueue(self):
        """Enqueue every kernel (non-blocking); returns the event of the layer's kernel."""
        enq, q = self.cl.enqueue_nd_range_kernel, self.queue
        evs = [enq(q, k, size, None) for k, size in self.items]
        return evs[self.main] if self.main >= 0 else None


POLL_SPIN_S = 0.002  # pure spinning this long first
POLL_YIELD_S = 0.05  # then spinning with sched_yield up to this long, then 50-us sleeps


def poll(flag: np.ndarray, value: int, timeout_s: float = 10.0, at_least: bool = False) -> float:
    """Spin until ``flag[0] == value`` (``>= value`` with ``at_least``: a sequence
    counter that later work may have moved on) with bounded backoff; seconds spent.
    Raises :class:`SyncTimeout` on timeout.

    The backoff is by elapsed time, not by spin count, and its first step is
    ``os.sched_yield`` rather than ``time.sleep(0)``: a zero sleep is a timed sleep that
    took 84 us on a KVM guest here (timer slack), which every wait longer than the
    spinning phase paid on finding the flag set."""
    t0 = time.perf_counter()
    spins = 0
    while (flag[0] < value) if at_least else (flag[0] != value):
        spins += 1
        if spins & 255:
            continue
        waited = time.perf_counter() - t0
        if waited < POLL_SPIN_S:
            continue
        if waited > timeout_s:
            raise SyncTimeout(f"OpenCL completion flag not at {value} after {timeout_s:g} s "
                              "(device error or hang)")
        if waited < POLL_YIELD_S:
            os.sched_yield()
        else:
            time.sleep(50e-6)
    return time.perf_counter() - t0


class CpuExecutor:
    """CPU side: onnxruntime single-layer sessions (1 thread, pinned), writing into SVM."""

    def __init__(self, cores: Sequence[int] | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        self.ort = ort
        self.cores = list(cores) if cores else None
        self.threads = threads
        self._sessions: dict[Any, Any] = {}

    def pin(self) -> None:
        if self.cores:
            os.sched_setaffinity(0, set(self.cores))

    def _session(self, layer: LayerSpec, c0: int, c1: int, x_shape: Sequence[int]):
        key = (id(layer), c0, c1, tuple(x_shape))
        s = self._sessions.get(key)
        if s is None:
            model, xs, ys = layer_model(layer, c0, c1, x_shape)
            so = self.ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            s = (self.ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]), xs, ys)
            self._sessions[key] = s
        return s

    def run(self, layer: LayerSpec, x: np.ndarray, y: np.ndarray, c0: int, c1: int, x_shape: Sequence[int]) -> None:
        """Compute output channels [c0, c1) into ``y`` (a view of the shared buffer, no copy)."""
        if c1 <= c0:
            return
        sess, xs, ys = self._session(layer, c0, c1, x_shape)
        io = sess.io_binding()
        if layer.kind in CHANNELWISE and layer.kind != "transpose":  # the part reads its own channels (rows) only
            inner = inner_size(layer, x_shape)
            x = x.reshape(-1)[c0 * inner: c1 * inner]
        io.bind_cpu_input("x", x.reshape(xs))
        per = int(np.prod(ys[2:] or [1]))
        out = y.reshape(-1) if layer.kind == "transpose" else y.reshape(-1)[c0 * per: c1 * per]
        io.bind_output("y", "cpu", 0, np.float32, ys, out.ctypes.data)
        sess.run_with_iobinding(io)


def layer_model(layer: LayerSpec, c0: int, c1: int, x_shape: Sequence[int]) -> tuple[bytes, list[int], list[int]]:
    """The ONNX model (serialised) computing output channels [c0, c1) of ``layer`` with
    onnxruntime, with its input and output shapes. Channel-wise kinds read channels
    (rows) [c0, c1) of the input; conv and linear read all of it."""
    from onnx import TensorProto, helper, numpy_helper

    n, kind = c1 - c0, layer.kind
    inits: list = []
    nodes_pre: list = []  # nodes before the layer's last one (a MatMul's before its bias Add)

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name))
        return name

    if kind == "linear":
        node = helper.make_node("Gemm", ["x", const("w", layer.w[c0:c1]), const("b", layer.b[c0:c1])], ["y"],
                                transB=1)
        xs, ys = [1, int(x_shape[-1])], [1, n]
    elif kind in ("conv", "dwconv"):
        k = layer.w.shape[-1]
        node = helper.make_node("Conv", ["x", const("w", layer.w[c0:c1]), const("b", layer.b[c0:c1])], ["y"],
                                kernel_shape=[k, k], strides=[layer.stride] * 2, pads=[layer.pad] * 4,
                                group=n if kind == "dwconv" else 1)
        _, ho, wo = layer.out_shape(x_shape)
        xs = [1, *x_shape[-3:]] if kind == "conv" else [1, n, *x_shape[-2:]]
        ys = [1, n, ho, wo]
    else:
        xs = [1, n, *x_shape[1:]] if kind not in ("softmax", "layernorm", "matmul") else [1, n, int(x_shape[-1])]
        ys = [1, *layer.out_shape(xs[1:])]
        if kind in ("maxpool", "avgpool"):
            node = helper.make_node("MaxPool" if kind == "maxpool" else "AveragePool", ["x"], ["y"],
                                    kernel_shape=[layer.k] * 2, strides=[layer.stride] * 2, pads=[layer.pad] * 4)
        elif kind == "gap":
            node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
        elif kind == "transpose":
            xs, ys = [1, *x_shape], [1, *layer.out_shape(x_shape)]
            node = helper.make_node("Transpose", ["x"], ["y"], perm=[0] + [p + 1 for p in layer.perm])
        elif kind in BINARY_OPS:
            if layer.mode == BROADCAST["last"]:
                w = layer.w.reshape(-1)
            elif layer.mode == BROADCAST["scalar"]:
                w = layer.w.reshape(())
            elif np.size(layer.w) != int(np.prod(x_shape)):  # per channel
                w = layer.w.reshape(-1)[c0:c1].reshape([1, n] + [1] * (len(xs) - 2))
            else:
                w = layer.w.reshape(int(x_shape[0]), -1)[c0:c1].reshape(xs)
            node = helper.make_node(kind.capitalize(), ["x", const("w", w)], ["y"])
        elif kind == "unary":
            mode = {v: k for k, v in UNARY_MODES.items()}[layer.mode]
            op = {"clamp": "Identity", "hardswish": "HardSwish", "sigmoid": "Sigmoid", "hardsigmoid": "HardSigmoid",
                  "erf": "Erf", "gelu": "Gelu"}
            node = helper.make_node(op[mode], ["x"], ["y"], domain="com.microsoft" if mode == "gelu" else "",
                                    **({"alpha": layer.alpha, "beta": layer.beta} if mode == "hardsigmoid" else {}))
        elif kind == "softmax":
            node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
        elif kind == "matmul":
            ys = [1, n, layer.cols]
            node = helper.make_node("MatMul", ["x", const("w", layer.w.reshape(-1, layer.cols))], ["y"])
            if layer.b.size == layer.cols:
                node.output[0] = "mm"
                nodes_pre = [node]
                node = helper.make_node("Add", ["mm", const("b", layer.b)], ["y"])
        elif kind == "layernorm":
            node = helper.make_node("LayerNormalization", ["x", const("g", layer.w), const("b", layer.b)], ["y"],
                                    axis=-1, epsilon=layer.alpha)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    nodes = [*nodes_pre, node]
    if np.isfinite(layer.lo) or np.isfinite(layer.hi):  # the fused activation
        node.output[0] = "acc"
        nodes.append(helper.make_node("Clip", ["acc", const("lo", np.array(layer.lo)), const("hi", np.array(layer.hi))],
                                      ["y"]))
    g = helper.make_graph(nodes, "part", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m.SerializeToString(), xs, ys


def channel_block(cpu: "CpuExecutor", runs: int = 15) -> dict[str, Any]:
    """The output-channel block the CPU executor's conv works in, measured: a 3x3 conv
    (64 in, 28x28) timed at every output channel count from 48 to 64 (counts interleaved
    run by run, so drift hits all alike; medians), the block read off by
    :func:`block_from_times` (onnxruntime's NCHWc convs: 8 on AVX2)."""
    rng = np.random.default_rng(0)
    layer = LayerSpec("conv", rng.standard_normal((64, 64, 3, 3)).astype(np.float32), np.zeros(64, np.float32), 1, 1)
    x = rng.standard_normal((64, 28, 28)).astype(np.float32)
    y = np.empty((64, 28, 28), np.float32)
    counts = range(48, 65)
    ts: dict[int, list[float]] = {n: [] for n in counts}
    for k in range(runs + 3):
        for n in counts:
            t0 = time.perf_counter()
            cpu.run(layer, x, y, 64 - n, 64, x.shape)
            if k >= 3:  # warm-up rounds
                ts[n].append(time.perf_counter() - t0)
    ms = {n: float(np.median(v)) * 1e3 for n, v in ts.items()}
    return {"block": block_from_times(ms), "ms_by_channels": {str(k): round(v, 4) for k, v in sorted(ms.items())}}


def block_from_times(ms: dict[int, float]) -> int:
    """The channel block b in 1, 4, 8, 16 whose staircase ``a + c * ceil(n / b)`` fits the
    conv times ``ms[n]`` best (least squares over all counts, so one noisy reading
    cannot decide it)."""
    n = np.array(sorted(ms), float)
    t = np.array([ms[k] for k in sorted(ms)])
    best = (np.inf, 1)
    for b in (1, 4, 8, 16):
        x = np.stack([np.ones_like(n), np.ceil(n / b)], axis=1)
        coef, *_ = np.linalg.lstsq(x, t, rcond=None)
        sse = float(np.sum((x @ coef - t) ** 2))
        if coef[1] > 0 and sse < best[0] * 0.999:
            best = (sse, b)
    return best[1]


def contention(ocl: "OclExecutor", cpu: "CpuExecutor", runs: int = 9) -> dict[str, Any]:
    """How much each executor slows down while the other runs, measured on conv layers
    split in half: the GPU half's kernel time (device events) and the CPU half's wall
    time, each alone and both at once (interleaved, medians). Shared caches and memory
    bandwidth can make concurrent halves slower than the same halves alone (informational:
    the planner does not use these factors)."""
    rng = np.random.default_rng(0)
    rows = []
    for c, h, f, k in ((64, 56, 64, 3), (128, 28, 128, 3), (256, 14, 256, 1), (96, 28, 192, 1)):
        layer = LayerSpec("conv", (rng.standard_normal((f, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32),
                          np.zeros(f, np.float32), 1, k // 2)
        x = rng.standard_normal((c, h, h)).astype(np.float32)
        r = CoRunner(layer, x, ocl, cpu)
        half = r.split_channels(0.5)
        r.run(0.5)  # builds the launch
        launch = r._launches[half]
        xs = np.asarray(r.x)
        t: dict[str, list[float]] = {"gpu": [], "cpu": [], "gpu_both": [], "cpu_both": []}
        for _ in range(runs + 1):
            r.flag[0] = 0
            ev = launch.enqueue()
            ocl.flush()
            poll(r.flag, 1)
            t["gpu"].append((ev.profile.end - ev.profile.start) * 1e-9)
            t0 = time.perf_counter()
            cpu.run(layer, xs, r.y, half, layer.out_channels, x.shape)
            t["cpu"].append(time.perf_counter() - t0)
            r.flag[0] = 0
            ev = launch.enqueue()
            ocl.flush()
            t0 = time.perf_counter()
            cpu.run(layer, xs, r.y, half, layer.out_channels, x.shape)
            t["cpu_both"].append(time.perf_counter() - t0)
            poll(r.flag, 1)
            t["gpu_both"].append((ev.profile.end - ev.profile.start) * 1e-9)
        med = {key: float(np.median(v[1:])) * 1e3 for key, v in t.items()}
        rows.append({"layer": f"{c}x{h}x{h}->{f} k{k}", **{f"{key}_ms": round(v, 4) for key, v in med.items()}})
    g = float(np.median([r["gpu_both_ms"] / r["gpu_ms"] for r in rows])) - 1.0
    c = float(np.median([r["cpu_both_ms"] / r["cpu_ms"] for r in rows])) - 1.0
    return {"gpu": round(max(g, 0.0), 4), "cpu": round(max(c, 0.0), 4), "layers": rows}


class CoRunner:
    """Run one layer split at a GPU share on both executors at once; time it."""

    def __init__(self, layer: LayerSpec, x: np.ndarray, ocl: OclExecutor | None, cpu: CpuExecutor,
                 sync: str = "svm", warm: bool = False) -> None:
        """``warm`` (SVM sync only): between runs the device waits in an :data:`idle_gate`
        that each run opens right after queueing its GPU part behind it, so that part
        starts without a wake-up of the device (as a serving runtime keeps its device);
        :meth:`close` lets the queue drain, and must be called before the queue is used
        for anything else."""
        if sync not in ("svm", "event", "finish"):
            raise ValueError(f"sync must be svm, event or finish (got {sync!r})")
        self.layer, self.ocl, self.cpu, self.sync = layer, ocl, cpu, sync
        self.x_shape = x.shape
        self.warm = bool(warm and ocl is not None and sync == "svm")
        self.host_s: list[float] = []  # per run with a GPU part: seconds the host spent launching it
        if ocl is not None:
            self.x = ocl.svm(x.shape)
            self.x[...] = x
            self.w = ocl.svm(layer.w.shape)
            self.w[...] = layer.w
            self.b = ocl.svm(layer.b.shape)
            self.b[...] = layer.b
            self.y = ocl.svm(layer.out_shape(x.shape))
            self.flag = ocl.svm((1,), np.int32)
            self.flag[0] = 0
            # the padded copy is made on the device by each launch (as in the graph runtime)
            self.xpad = ocl.padded_buffer(x.shape, layer.pad) if wants_padded_input(layer) else None
            self._launches: dict[int, Launch] = {}
            if self.warm:
                self.go = ocl.svm((1,), np.int32)
                self.go[0] = 0
                self._idle = ocl.cl.Kernel(ocl.prog, "idle_gate")
                self._idle.set_args(ocl.cl.SVM(self.go), np.int32(GATE_SPINS))
                ocl.cl.enqueue_nd_range_kernel(ocl.queue, self._idle, (1,), None)
                ocl.flush()
        else:
            self.x, self.w, self.b = x, layer.w, layer.b
            self.y = np.empty(layer.out_shape(x.shape), np.float32)

    def close(self) -> None:
        """Open the idle gate for the last time and let the queue drain (warm runners)."""
        if self.warm:
            self.warm = False
            self.go[0] = 1
            self.ocl.queue.finish()

    def split_channels(self, ratio: float, align: int = 8) -> int:
        c = self.layer.out_channels
        k = int(round(ratio * c / align) * align)
        return min(max(k, 0), c)

    def run(self, ratio: float) -> float:
        """One co-executed run at GPU share ``ratio``; wall seconds."""
        k = self.split_channels(ratio) if self.ocl is not None else 0
        c = self.layer.out_channels
        t0 = time.perf_counter()
        ev = None
        if k > 0:
            launch = self._launches.get(k)
            if launch is None:  # kernel arguments set once per GPU share, as the graph runtime does
                launch = self._launches[k] = self.ocl.prepare(
                    self.layer, self.x, self.w, self.b, self.y, 0, k, self.x_shape, self.xpad,
                    flag=self.flag if self.sync == "svm" else None, value=1)
                t0 = time.perf_counter()
            self.flag[0] = 0  # the previous run was waited for
            ev = launch.enqueue()
            if self.warm:  # the next idle gate behind this run's work
                self.ocl.cl.enqueue_nd_range_kernel(self.ocl.queue, self._idle, (1,), None)
            self.ocl.flush()
            if self.warm:  # then open the current one
                self.go[0] = 1
            # the host's part of the launch: time the CPU's own part starts later by
            self.host_s.append(time.perf_counter() - t0)
        self.cpu.run(self.layer, self.x, self.y, k, c, self.x_shape)
        if k > 0:
            if self.sync == "svm":
                poll(self.flag, 1)
            elif self.sync == "event":
                ev.wait()
            else:
                self.ocl.queue.finish()
        return time.perf_counter() - t0


def reference(layer: LayerSpec, x: np.ndarray) -> np.ndarray:
    """onnxruntime's output of the whole layer (the correctness check)."""
    cpu = CpuExecutor()
    y = np.empty(layer.out_shape(x.shape), np.float32)
    cpu.run(layer, x, y, 0, layer.out_channels, x.shape)
    return y


def sync_costs(ocl: OclExecutor, n: int = 200, reps: int = 15) -> dict[str, float]:
    """Median per-op synchronisation cost (us) of each way the host and the device hand
    work to each other.

    - ``svm``: the runtime's SVM path (:class:`~coexec.graph_runtime.GraphRunner` with
      ``sync="svm"``): ``n`` launches enqueued ahead, each a :data:`gate` then a flag
      store; per op the host releases one with a store into SVM and polls its flag, so a
      handoff each way costs a store and a poll, no enqueue and no device wake-up;
    - ``svm_enqueue``: the host enqueues each trivial kernel, flushes and polls its SVM flag;
    - ``event``: the same with a wait on the kernel's event; ``finish``: with clFinish.

    For the last three the per-op time of the same kernels enqueued without any wait (one
    finish at the end, ``pipelined_op_us``: the enqueue work, which the SVM path does
    ahead) is taken off. Methods alternate within each repetition so that they see the
    same machine state.
    """
    flag = ocl.svm((1,), np.int32)
    flag[0] = 0
    seq = 0
    go, gflag, timed_out = (ocl.svm((1,), np.int32) for _ in range(3))
    cl = ocl.cl
    gated = []
    for i in range(1, n + 1):
        g, f = cl.Kernel(ocl.prog, "gate"), cl.Kernel(ocl.prog, "set_flag")
        g.set_args(cl.SVM(go), np.int32(i), np.int32(GATE_SPINS), cl.SVM(timed_out))
        f.set_args(cl.SVM(gflag), np.int32(i))
        gated.append((g, f))

    def gated_round_trips() -> float:
        """Per-op seconds of releasing each pre-enqueued gate and polling its flag."""
        go[0] = gflag[0] = timed_out[0] = 0
        for g, f in gated:
            cl.enqueue_nd_range_kernel(ocl.queue, g, (1,), None)
            cl.enqueue_nd_range_kernel(ocl.queue, f, (1,), None)
        ocl.flush()
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            go[0] = i
            poll(gflag, i)
        per_op = (time.perf_counter() - t0) / n
        ocl.queue.finish()
        if timed_out[0]:
            raise SyncTimeout(f"a gate gave up waiting for release {int(timed_out[0])}")
        return per_op

    def waited_ops(method: str) -> float:
        """Per-op seconds of enqueueing trivial kernels, waiting after each by ``method``."""
        nonlocal seq
        t0 = time.perf_counter()
        for _ in range(n):
            seq += 1
            ev = ocl.signal(flag, seq)
            if method == "none":
                continue
            ocl.flush()
            if method == "svm_enqueue":
                poll(flag, seq)
            elif method == "event":
                ev.wait()
            else:
                ocl.queue.finish()
        if method == "none":
            ocl.queue.finish()
        return (time.perf_counter() - t0) / n

    per_op: dict[str, list[float]] = {m: [] for m in ("none", "svm_enqueue", "event", "finish", "svm")}
    for _ in range(reps):
        for method in per_op:
            per_op[method].append((gated_round_trips() if method == "svm" else waited_ops(method)) * 1e6)
    base = float(np.median(per_op["none"]))
    out = {m: max(float(np.median(v)) - base, 0.0) for m, v in per_op.items() if m not in ("none", "svm")}
    return {"svm": float(np.median(per_op["svm"])), **out, "pipelined_op_us": base}


def notify_latency(ocl: OclExecutor, n: int = 200, max_spins: int = 200_000_000) -> dict[str, float]:
    """Median microseconds from the moment a running device kernel is released to the
    moment the host knows it has finished, per method (svm flag polling, event wait,
    clFinish): the part of a synchronisation that pipelining cannot hide.

    Each probe kernel (``wait_go``) announces its start in SVM and spins until the host
    stores the go value; the clock starts at that store, so kernel launch latency is
    excluded for every method alike. Methods alternate probe by probe.
    """
    go, started, done = (ocl.svm((1,), np.int32) for _ in range(3))
    go[0] = started[0] = done[0] = 0
    cl = ocl.cl
    seq = 0
    out: dict[str, list[float]] = {"svm": [], "event": [], "finish": []}
    for _ in range(n):
        for method in out:
            seq += 1
            ocl.k_wait_go.set_args(cl.SVM(go), cl.SVM(started), cl.SVM(done), np.int32(seq), np.int32(max_spins))
            ev = cl.enqueue_nd_range_kernel(ocl.queue, ocl.k_wait_go, (1,), None)
            ocl.flush()
            poll(started, seq)
            t0 = time.perf_counter()
            go[0] = seq
            if method == "svm":
                poll(done, seq)
            elif method == "event":
                ev.wait()
            else:
                ocl.queue.finish()
            out[method].append((time.perf_counter() - t0) * 1e6)
            ocl.queue.finish()  # the queue is empty before the next probe
    return {m: float(np.median(v)) for m, v in out.items()}


def measure(fn: Callable[[], float], warmup: int = 2, runs: int = 9) -> float:
    """Median seconds of ``fn`` after warm-up."""
    for _ in range(warmup):
        fn()
    return float(np.median([fn() for _ in range(runs)]))


def layer_from_onnx(path: str | os.PathLike) -> tuple[LayerSpec, tuple[int, ...]]:
    """The single Conv or Gemm/MatMul layer of a model file, and its input shape (no batch)."""
    import onnx
    from onnx import numpy_helper

    from oplat.graph_only import is_graph_only

    m = onnx.load(str(path), load_external_data=False)
    if is_graph_only(m):
        raise OplatError(f"{path}: graph-only model (no weights); coexec bench runs real weights")
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    compute = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    if len(compute) != 1:
        raise OplatError(f"{path}: {len(compute)} conv/linear layers; the runtime executes single-layer models "
                         "(whole-model co-execution is not implemented yet)")
    n = compute[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    if n.input[1] not in inits:
        raise OplatError(f"{path}: {n.op_type} weights are not constant")
    w = inits[n.input[1]].astype(np.float32)
    if n.op_type == "Conv":
        if int(attrs.get("group", 1)) != 1 or len(set(w.shape[2:])) != 1:
            raise OplatError(f"{path}: only dense square convolutions run on the runtime's OpenCL kernels")
        pads = attrs.get("pads", [0, 0, 0, 0])
        if len(set(pads)) != 1 or len(set(attrs.get("strides", [1, 1]))) != 1:
            raise OplatError(f"{path}: asymmetric pads/strides are not supported by the runtime kernels")
        b = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
        return LayerSpec("conv", w, b.astype(np.float32), int(attrs.get("strides", [1])[0]), int(pads[0])), tuple(dims[1:])
    if n.op_type == "MatMul" or not attrs.get("transB", 0):
        w = w.T
    b = inits[n.input[2]] if n.op_type == "Gemm" and len(n.input) > 2 else np.zeros(w.shape[0], np.float32)
    return LayerSpec("linear", np.ascontiguousarray(w), b.astype(np.float32).reshape(-1)), (int(dims[-1]),)


def bench_layer(layer: LayerSpec, x_shape: Sequence[int], steps: int = 16, sync: str = "svm",
                cpu_cores: Sequence[int] | None = None, gpu_cores: Sequence[int] | None = None,
                runs: int = 9, cpu_only: bool = False, sync_reps: int = 15, warm: bool = True,
                confirm: int = 5) -> dict[str, Any]:
    """CPU-only, GPU-only, planned and grid-searched (oracle) co-execution, measured in one run
    (``warm``: the device waits for each run in an idle gate, :class:`CoRunner`). The
    oracle's split is the fastest of the grid; it and the planned split are then timed
    ``confirm`` more times each in alternating blocks, and those medians are compared (the
    grid's minimum is kept as ``oracle_grid_ms``)."""
    ncpu = os.cpu_count() or 1
    gpu_cores = list(gpu_cores) if gpu_cores else [ncpu - 1]
    cpu_cores = list(cpu_cores) if cpu_cores else [c for c in range(ncpu) if c not in gpu_cores] or [0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(tuple(x_shape)).astype(np.float32)
    ref = reference(layer, x)
    cpu = CpuExecutor(cpu_cores)
    ocl = None if cpu_only else OclExecutor(gpu_cores)
    prev = os.sched_getaffinity(0)
    cpu.pin()
    r = None
    try:
        r = CoRunner(layer, x, ocl, cpu, sync, warm=warm)
        out: dict[str, Any] = {"layer": layer.kind, "weights": list(layer.w.shape), "input": list(x_shape),
                               "cpu_cores": cpu_cores, "gpu_cores": gpu_cores, "sync": sync,
                               "warm": r.warm, "device": ocl.device.name if ocl else None}
        if ocl is None:
            out["cpu_ms"] = measure(lambda: r.run(0.0), runs=runs) * 1e3
            return out
        # each split in a block of runs (every run after the first sees the caches its own
        # split leaves; interleaving the splits was measured noisier here)
        ratios = sorted({r.split_channels(q) / layer.out_channels for q in np.linspace(0, 1, steps + 1)})
        grid = {q: measure(lambda q=q: r.run(q), runs=runs) for q in ratios}
        cpu_s, gpu_s = grid[0.0], grid[1.0]
        out["cpu_ms"] = cpu_s * 1e3
        # planner: the linear partition model on the executors' whole-layer times of this
        # run, with the host's time to launch the GPU part (which delays the CPU's part and
        # is inside the GPU-only time) taken as the whole-model planner takes it (host_us)
        host_s = float(np.median(r.host_s)) if r.host_s else 0.0
        planned_ratio = r.split_channels(cpu_s / (cpu_s + max(gpu_s - host_s, 1e-9))) / layer.out_channels
        best = min(grid, key=grid.get)
        # the oracle's split is the grid's fastest, a minimum over noisy medians (biased low):
        # both splits are timed again side by side, in alternating blocks, for the comparison
        again: dict[float, list[float]] = {planned_ratio: [], best: []}
        for _ in range(confirm):
            for q in again:
                again[q].append(measure(lambda q=q: r.run(q), runs=runs))
        planned_s, best_s = (float(np.median(again[q])) for q in (planned_ratio, best))
        r.run(planned_ratio)
        err = max_rel_err(r.y, ref)
        fast = min(cpu_s, gpu_s)
        out.update(gpu_ms=gpu_s * 1e3, planned_ms=planned_s * 1e3, oracle_ms=best_s * 1e3,
                   oracle_grid_ms=grid[best] * 1e3, host_launch_us=host_s * 1e6,
                   planned_ratio=planned_ratio, oracle_ratio=best, grid_ms={f"{q:.4f}": v * 1e3 for q, v in grid.items()},
                   speedup_planned=fast / planned_s, speedup_oracle=fast / best_s,
                   ceiling=1 + fast / max(cpu_s, gpu_s), planned_share_of_oracle=best_s / planned_s,
                   max_rel_err=err, outputs_match=err <= 1e-5)
        r.close()  # the queue is the probes' now
        out["sync_us"] = sync_costs(ocl, reps=sync_reps)
        out["notify_us"] = notify_latency(ocl)
        return out
    finally:
        if r is not None:
            r.close()
        os.sched_setaffinity(0, prev)
