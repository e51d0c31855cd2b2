/* Causal self-attention for training on the CPU in fp32, forward and backward
(rlscale.models.native_train.causal_attention; the pre-training forward, FastDecoder.causal_logits).

Why: torch's CPU flash kernel computes every block of the [S, S] scores, the masked upper half
included, and at the micro rungs' head widths (16-32) its block products are short. Pre-training
spends 18% of a 128-token step and 37% of a 512-token step there (600k rung, docs/benchmarks.md).
Here only the keys j <= i of each query are computed, in register tiles of QB queries x 16 keys
(scores: q . k over the head dimension) and QB queries x 16 head dimensions (mixing: sum over keys).

The math is softmax(q k^T + causal mask) v with q already scaled (the decoder folds 1/sqrt(hd)
into q). The forward saves each row's log-sum-exp; the backward recomputes the probabilities from
it (as flash attention does) rather than keeping [S, S] per head:
  p_ij = exp(q_i . k_j - lse_i),  dp_ij = do_i . v_j,  ds_ij = p_ij (dp_ij - do_i . o_i),
  dq_i = sum_j ds_ij k_j,  dk_j = sum_i ds_ij q_i,  dv_j = sum_i p_ij do_i.
Work is split over (row, kv head) units, one thread each: no unit writes another's memory, so
results do not depend on the thread count. Grouped-query heads sharing a kv head run in one unit,
which owns that kv head's gradients.

Layouts: q [B, S, nh, hd] whose tokens sit qs floats apart (a view into a fused projection: the
heads of a token contiguous, tokens strided), k / v [B, S, nkv, hd] at ks / vs; o and do
[B, S, nh, hd] contiguous, lse [B, nh, S]; dq [B, S, nh, hd], dk / dv [B, S, nkv, hd] contiguous.
hd must be a multiple of 16 (the tile width); the entry points return 1 otherwise, and 2 when the
threads' scratch cannot be allocated (nothing written then).
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"

#define VL 16 /* floats per vector of the tiles: one AVX-512 register, two AVX2 ones */
#define QB 8  /* queries per tile (tiles of 4 ran at 0.85-1.03x the speed of 8, the Intel kind) */

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

typedef float vec __attribute__((vector_size(4 * VL)));
typedef float vec_u __attribute__((vector_size(4 * VL), aligned(4)));  /* unaligned access */
static inline vec ld(const float *p) { return *(const vec_u *)p; }
static inline void st(float *p, vec x) { *(vec_u *)p = x; }

/* x's S rows (hd floats, ts apart) -> xt [hd][S16], columns S..S16-1 zero */
static void transpose_in(const float *x, int64_t ts, float *xt, int64_t S, int64_t S16,
                         int64_t hd) {
    for (int64_t d = 0; d < hd; d++) {
        float *row = xt + d * S16;
        for (int64_t j = 0; j < S; j++) row[j] = x[j * ts + d];
        for (int64_t j = S; j < S16; j++) row[j] = 0.0f;
    }
}

/* s[r][j] = a_r . x_j for QB rows a (as floats apart) and keys j < 16 nk, from xt [hd][S16] */
static inline void tile_dots(const float *a, int64_t as, const float *xt, float *s, int64_t S16,
                             int64_t nk, int64_t hd) {
    for (int64_t kb = 0; kb < nk; kb++) {
        vec acc[QB] = {0};
        for (int64_t d = 0; d < hd; d++) {
            vec kv = ld(xt + d * S16 + kb * VL);
            for (int r = 0; r < QB; r++) acc[r] += a[r * as + d] * kv;
        }
        for (int r = 0; r < QB; r++) st(s + r * S16 + kb * VL, acc[r]);
    }
}

/* out[r] = scale[r] * sum_{j < n} w[r][j] x_j for QB rows of weights w [QB][S16], x's rows xs
   floats apart; scale NULL: 1 */
static inline void tile_mix(const float *w, int64_t S16, const float *x, int64_t xs, int64_t n,
                            float *out, const float *scale, int64_t hd) {
    for (int64_t c = 0; c < hd; c += VL) {
        vec acc[QB] = {0};
        for (int64_t j = 0; j < n; j++) {
            vec xv = ld(x + j * xs + c);
            for (int r = 0; r < QB; r++) acc[r] += w[r * S16 + j] * xv;
        }
        for (int r = 0; r < QB; r++) st(out + r * hd + c, scale ? acc[r] * scale[r] : acc[r]);
    }
}

/* dx_j += sum_r w[r][j] a_r for j < n: a key-side gradient from one tile of queries a [QB][hd] */
static inline void tile_outer(const float *w, int64_t S16, const float *a, int64_t n, float *dx,
                              int64_t dxs, int64_t hd) {
    for (int64_t c = 0; c < hd; c += VL) {
        vec av[QB];
        for (int r = 0; r < QB; r++) av[r] = ld(a + r * hd + c);
        for (int64_t j = 0; j < n; j++) {
            vec acc = ld(dx + j * dxs + c);
            for (int r = 0; r < QB; r++) acc += w[r * S16 + j] * av[r];
            st(dx + j * dxs + c, acc);
        }
    }
}

/* max of x[0..n), n >= 1: sixteen running maxima (a loop the compiler vectorizes), then one */
static inline float row_max(const float *x, int64_t n) {
    float mv[VL], m = x[0];
    for (int t = 0; t < VL; t++) mv[t] = x[0];
    int64_t j = 0;
    for (; j + VL <= n; j += VL)
        for (int t = 0; t < VL; t++) mv[t] = x[j + t] > mv[t] ? x[j + t] : mv[t];
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    for (int t = 0; t < VL; t++) m = mv[t] > m ? mv[t] : m;
    return m;
}

/* Copy rows i0.. (nr of them, ts apart) into a zeroed tile [QB][hd] */
static inline void load_tile(float *tile, const float *x, int64_t ts, int64_t nr, int64_t hd) {
    memset(tile, 0, sizeof(float) * QB * hd);
    for (int64_t r = 0; r < nr; r++) memcpy(tile + r * hd, x + r * ts, sizeof(float) * hd);
}

static inline void store_tile(float *x, int64_t ts, const float *tile, int64_t nr, int64_t hd) {
    for (int64_t r = 0; r < nr; r++) memcpy(x + r * ts, tile + r * hd, sizeof(float) * hd);
}

/* One head: q's S rows (qs apart) against kt [hd][S16] and v's rows (vs apart) -> o's rows (os
   apart) and lse [S]. Scratch: s [QB][S16], qt / ot [QB][hd]. */
static void head_fwd(const float *q, int64_t qs, const float *kt, const float *v, int64_t vs,
                     float *o, int64_t os, float *lse, float *s, float *qt, float *ot, int64_t S,
                     int64_t S16, int64_t hd) {
    for (int64_t i0 = 0; i0 < S; i0 += QB) {
        const int64_t nr = S - i0 < QB ? S - i0 : QB, nb = i0 + nr;  /* keys of the tile */
        load_tile(qt, q + i0 * qs, qs, nr, hd);
        tile_dots(qt, hd, kt, s, S16, (nb + VL - 1) / VL, hd);
        float inv[QB];
        for (int64_t r = 0; r < QB; r++) {
            float *sr = s + r * S16, l = 0.0f;
            const int64_t n = r < nr ? i0 + r + 1 : 0;  /* keys j <= i; none for a pad row */
            const float m = n ? row_max(sr, n) : 0.0f;
#pragma omp simd reduction(+ : l)
            for (int64_t j = 0; j < nb; j++) {
                sr[j] = j < n ? fexp(sr[j] - m) : 0.0f;
                l += sr[j];
            }
            inv[r] = n ? 1.0f / l : 0.0f;
            if (n) lse[i0 + r] = m + logf(l);
        }
        tile_mix(s, S16, v, vs, nb, ot, inv, hd);
        store_tile(o + i0 * os, os, ot, nr, hd);
    }
}

int causal_attn_fwd(const float *q, int64_t qs, const float *k, int64_t ks, const float *v,
                    int64_t vs, float *o, float *lse, int64_t B, int64_t S, int64_t nh,
                    int64_t nkv, int64_t hd, int nthreads) {
    if (nkv < 1 || nh % nkv || hd < VL || hd % VL || S < 1 || nthreads < 1) return 1;
    const int64_t g = nh / nkv, S16 = (S + VL - 1) / VL * VL;
    const int64_t per = hd * S16 + QB * S16 + 2 * QB * hd;  /* one thread's scratch */
    float *all = malloc(sizeof(float) * per * nthreads);
    if (!all) return 2;
#pragma omp parallel for num_threads(nthreads) if (B * nkv > 1 && B * S * nh * hd >= 65536)
    for (int64_t u = 0; u < B * nkv; u++) {
        const int64_t b = u / nkv, kh = u % nkv;
        float *kt = all + per * thread_id(), *s = kt + hd * S16, *qt = s + QB * S16;
        float *ot = qt + QB * hd;
        transpose_in(k + b * S * ks + kh * hd, ks, kt, S, S16, hd);
        for (int64_t h = kh * g; h < (kh + 1) * g; h++)
            head_fwd(q + b * S * qs + h * hd, qs, kt, v + b * S * vs + kh * hd, vs,
                     o + (b * S * nh + h) * hd, nh * hd, lse + (b * nh + h) * S, s, qt, ot, S,
                     S16, hd);
    }
    free(all);
    return 0;
}

/* One head's backward; adds into its kv head's dk / dv rows (dks apart). Scratch: p, ds
   [QB][S16], qt, gt, ot [QB][hd]. */
static void head_bwd(const float *q, int64_t qs, const float *k, int64_t ks, const float *kt,
                     const float *vt, const float *o, const float *dout, int64_t os,
                     const float *lse, float *dq, float *dk, float *dv, int64_t dks, float *p,
                     float *ds, float *qt, float *gt, float *ot, int64_t S, int64_t S16,
                     int64_t hd) {
    for (int64_t i0 = 0; i0 < S; i0 += QB) {
        const int64_t nr = S - i0 < QB ? S - i0 : QB, nb = i0 + nr, nk = (nb + VL - 1) / VL;
        load_tile(qt, q + i0 * qs, qs, nr, hd);
        load_tile(gt, dout + i0 * os, os, nr, hd);
        float D[QB] = {0};  /* do_i . o_i */
        for (int64_t r = 0; r < nr; r++) {
            const float *oi = o + (i0 + r) * os;
            for (int64_t d = 0; d < hd; d++) D[r] += gt[r * hd + d] * oi[d];
        }
        tile_dots(qt, hd, kt, p, S16, nk, hd);
        tile_dots(gt, hd, vt, ds, S16, nk, hd);
        for (int64_t r = 0; r < QB; r++) {
            float *pr = p + r * S16, *dr = ds + r * S16;
            const int64_t n = r < nr ? i0 + r + 1 : 0;
            const float li = n ? lse[i0 + r] : 0.0f, Dr = D[r];
#pragma omp simd
            for (int64_t j = 0; j < nb; j++) {
                pr[j] = j < n ? fexp(pr[j] - li) : 0.0f;
                dr[j] = pr[j] * (dr[j] - Dr);
            }
        }
        tile_mix(ds, S16, k, ks, nb, ot, NULL, hd);
        store_tile(dq + i0 * os, os, ot, nr, hd);
        tile_outer(ds, S16, qt, nb, dk, dks, hd);
        tile_outer(p, S16, gt, nb, dv, dks, hd);
    }
}

int causal_attn_bwd(const float *q, int64_t qs, const float *k, int64_t ks, const float *v,
                    int64_t vs, const float *o, const float *dout, const float *lse, float *dq,
                    float *dk, float *dv, int64_t B, int64_t S, int64_t nh, int64_t nkv,
                    int64_t hd, int nthreads) {
    if (nkv < 1 || nh % nkv || hd < VL || hd % VL || S < 1 || nthreads < 1) return 1;
    const int64_t g = nh / nkv, S16 = (S + VL - 1) / VL * VL;
    const int64_t per = 2 * hd * S16 + 2 * QB * S16 + 3 * QB * hd;  /* one thread's scratch */
    float *all = malloc(sizeof(float) * per * nthreads);
    if (!all) return 2;
#pragma omp parallel for num_threads(nthreads) if (B * nkv > 1 && B * S * nh * hd >= 65536)
    for (int64_t u = 0; u < B * nkv; u++) {
        const int64_t b = u / nkv, kh = u % nkv;
        float *kt = all + per * thread_id(), *vt = kt + hd * S16, *p = vt + hd * S16;
        float *ds = p + QB * S16, *qt = ds + QB * S16, *gt = qt + QB * hd, *ot = gt + QB * hd;
        const float *kb = k + b * S * ks + kh * hd;
        transpose_in(kb, ks, kt, S, S16, hd);
        transpose_in(v + b * S * vs + kh * hd, vs, vt, S, S16, hd);
        float *dkb = dk + (b * S * nkv + kh) * hd, *dvb = dv + (b * S * nkv + kh) * hd;
        for (int64_t j = 0; j < S; j++) {
            memset(dkb + j * nkv * hd, 0, sizeof(float) * hd);
            memset(dvb + j * nkv * hd, 0, sizeof(float) * hd);
        }
        for (int64_t h = kh * g; h < (kh + 1) * g; h++) {
            const int64_t off = (b * S * nh + h) * hd;
            head_bwd(q + b * S * qs + h * hd, qs, kb, ks, kt, vt, o + off, dout + off, nh * hd,
                     lse + (b * nh + h) * S, dq + off, dkb, dvb, nkv * hd, p, ds, qt, gt, ot, S,
                     S16, hd);
        }
    }
    free(all);
    return 0;
}
