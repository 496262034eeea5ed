/* C[r, n] = sum_k A[r, k] B[r / M][k, n] (+ bias[n]) over rows [r0, r1) of A (rows of all
   batches in a row); b_stride 0: one B (weights) for every row.

   Built once per variant: -D VEC=1 -D ROWS=1 (matmul_rows1: one column of one row per
   work-item, any N) and -D VEC=8 -D ROWS=2 (matmul_rows8: 8 consecutive columns of 2 rows,
   for N a multiple of 8; the second row when it is below r1 and reads the same B). */
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#if VEC == 8
typedef float8 vec_t;
#define VLOAD(p) vload8(0, (p))
#define VSTORE(v, p) vstore8((v), 0, (p))
#else
typedef float vec_t;
#define VLOAD(p) (*(p))
#define VSTORE(v, p) (*(p) = (v))
#endif

__kernel void CAT(matmul_rows, VEC)(__global const float *a, __global const float *bm, __global const float *bias,
                                    __global float *c, int M, int K, int N, int b_stride, int has_bias, int r0,
                                    int r1, float lo, float hi) {
    int n = VEC * get_global_id(0), r = ROWS * get_global_id(1) + r0;
    __global const float *a0 = a + r * K, *bb = bm + (r / M) * b_stride + n;
    vec_t acc0 = has_bias ? VLOAD(bias + n) : (vec_t)(0.0f);
#if ROWS == 2
    int two = r + 1 < r1 && (b_stride == 0 || (r + 1) % M != 0);
    if (two) {
        __global const float *a1 = a0 + K;
        vec_t acc1 = acc0;
        for (int q = 0; q < K; ++q) {
            vec_t bv = VLOAD(bb + q * N);
            acc0 += a0[q] * bv;
            acc1 += a1[q] * bv;
        }
        VSTORE(clamp(acc1, lo, hi), c + (r + 1) * N + n);
    } else
#endif
    for (int q = 0; q < K; ++q) acc0 += a0[q] * VLOAD(bb + q * N);
    VSTORE(clamp(acc0, lo, hi), c + r * N + n);
}
