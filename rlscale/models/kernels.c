/* Fused fp32 CPU kernels for one decoding step of a Qwen3 / Qwen2 decoder (rlscale.models.native),
and for the element-wise parts of a training step with their backward (at the end of the file;
rlscale.models.native_train).

Why: at micro scale a decoding step is dozens of tiny torch ops per layer, each paying dispatch,
allocation and a pass over memory; the matrix products are the only part that needs a BLAS. These
kernels do everything between the matrix products in one pass each: RMSNorm, the per-head q/k
RMSNorm + RoPE + KV-cache write + attention over the shared prompt cache and the row's own
completion, SwiGLU, and inverse-CDF sampling. The math is the torch path's (rlscale.models.fast);
tests/test_native.py checks logits and samples against it.

Layouts (all contiguous, row-major):
  qkv   [B, (nh + 2 nkv) hd]  output of the fused q/k/v projection (q already scaled by 1/sqrt(hd)
                              through the folded q-norm weights, or the projection for Qwen2)
  pk/pv [U, nkv, P, hd]       prompt cache, shared by the rows whose owner is u; pvalid [U, P]
  ck/cv [B, nkv, T, hd]       completion cache of each row; column `col` is written this step
  cos/sin [max_pos, hd]       RoPE tables, sin signed: rope(x)_i = x_i cos_i + x_{(i+hd/2)%hd} sin_i

Size limits: MAX_HEAD_DIM and MAX_KEYS size the per-row stack buffers of attend_decode. They are
passed in by rlscale.models.native at compile time (-D, their one home is native.py), and every
entry point that uses them checks its sizes against them and returns an error code instead of
writing past a buffer.
*/
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"

#if !defined(MAX_HEAD_DIM) || !defined(MAX_KEYS)
#error "compile with -DMAX_HEAD_DIM=<n> -DMAX_KEYS=<n> (rlscale.models.native does)"
#endif

static inline float rms_scale(const float *x, int64_t n, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    return 1.0f / sqrtf(ss / (float)n + eps);
}

/* y[r] = x[r] * s[r] (* w when w is not NULL), s[r] = rsqrt(mean(x[r]^2) + eps). */
void rms_rows(const float *x, float *y, const float *w, int64_t rows, int64_t dim, float eps,
              int nthreads) {
#pragma omp parallel for num_threads(nthreads) if (rows * dim >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        float s = rms_scale(xr, dim, eps);
        if (w) {
            for (int64_t i = 0; i < dim; i++) yr[i] = xr[i] * s * w[i];
        } else {
            for (int64_t i = 0; i < dim; i++) yr[i] = xr[i] * s;
        }
    }
}

/* Row bodies are kept out of line (noinline, restrict): inlined into an OpenMP loop's outlined
   function gcc's code for them ran ~10x slower, with one thread or more (the SwiGLU of [4096, 320]
   rows: 7.9 ms inside the loop, 0.8 ms out of line). */
__attribute__((noinline)) static void swiglu_row(const float *restrict g,
                                                 const float *restrict u, float *restrict o,
                                                 int64_t n) {
    for (int64_t i = 0; i < n; i++) o[i] = g[i] / (1.0f + fexp(-g[i])) * u[i];
}

/* out[r] = silu(gu[r, :I]) * gu[r, I:2I] */
void swiglu_rows(const float *gu, float *out, int64_t rows, int64_t inter, int nthreads) {
#pragma omp parallel for num_threads(nthreads) if (rows * inter >= 65536)
    for (int64_t r = 0; r < rows; r++)
        swiglu_row(gu + r * 2 * inter, gu + r * 2 * inter + inter, out + r * inter, inter);
}

/* Per-head RMSNorm (optional, weight row w) and RoPE of one head vector x -> y;
   hd <= MAX_HEAD_DIM (attend_decode checks). */
static inline void norm_rope(const float *x, float *y, const float *w, float eps,
                             const float *c, const float *s, int64_t hd) {
    float buf[MAX_HEAD_DIM];
    const float *src = x;
    if (w) {
        float sc = rms_scale(x, hd, eps);
        for (int64_t i = 0; i < hd; i++) buf[i] = x[i] * sc * w[i];
        src = buf;
    }
    int64_t h2 = hd / 2;
    for (int64_t i = 0; i < h2; i++) y[i] = src[i] * c[i] + src[i + h2] * s[i];
    for (int64_t i = h2; i < hd; i++) y[i] = src[i] * c[i] + src[i - h2] * s[i];
}

/* One decoding step of attention for B rows: q/k norm + RoPE, write k/v into the completion
   cache at column col, attend to the owner's prompt (valid columns) and the row's completion
   columns 0..col, write out [B, nh hd]. Rows are independent (parallel over rows). Returns 0,
   or 1 without touching memory when the sizes do not fit the buffers or the layout (head_dim
   even and <= MAX_HEAD_DIM, P + col + 1 <= MAX_KEYS, col < T, nh a multiple of nkv). */
int attend_decode(const float *qkv, const float *qk_norm, float eps, const float *cos_t,
                   const float *sin_t, const int64_t *pos, const float *pk, const float *pv,
                   const uint8_t *pvalid, const int64_t *owner, float *ck, float *cv, int64_t col,
                   int64_t T, float *out, int64_t B, int64_t nh, int64_t nkv, int64_t hd,
                   int64_t P, int nthreads) {
    if (hd < 2 || hd % 2 || hd > MAX_HEAD_DIM || P < 0 || col < 0 || col >= T ||
        P + col + 1 > MAX_KEYS || nkv < 1 || nh % nkv)
        return 1;
    int64_t width = (nh + 2 * nkv) * hd, r = nh / nkv, n_keys = P + col + 1;
#pragma omp parallel for num_threads(nthreads) if (B * nh * n_keys * hd >= 32768)
    for (int64_t b = 0; b < B; b++) {
        const float *row = qkv + b * width;
        const float *c = cos_t + pos[b] * hd, *s = sin_t + pos[b] * hd;
        int64_t u = owner[b];
        for (int64_t h = 0; h < nkv; h++) {  /* this step's k (normed, rotated) and v -> cache */
            float *kd = ck + ((b * nkv + h) * T + col) * hd;
            float *vd = cv + ((b * nkv + h) * T + col) * hd;
            norm_rope(row + (nh + h) * hd, kd, qk_norm ? qk_norm + (nh + h) * hd : 0, eps, c, s,
                      hd);
            memcpy(vd, row + (nh + nkv + h) * hd, hd * sizeof(float));
        }
        float q[MAX_HEAD_DIM], sc[MAX_KEYS], o[MAX_HEAD_DIM];
        for (int64_t h = 0; h < nh; h++) {
            int64_t g = h / r;
            norm_rope(row + h * hd, q, qk_norm ? qk_norm + h * hd : 0, eps, c, s, hd);
            const float *kp = pk + (u * nkv + g) * P * hd, *vp = pv + (u * nkv + g) * P * hd;
            const float *kc = ck + (b * nkv + g) * T * hd, *vc = cv + (b * nkv + g) * T * hd;
            const uint8_t *valid = pvalid + u * P;
            float mx = -INFINITY;
            for (int64_t j = 0; j < P; j++) {
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int64_t i = 0; i < hd; i++) d += q[i] * kp[j * hd + i];
                sc[j] = valid[j] ? d : -INFINITY;
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int64_t j = 0; j <= col; j++) {
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int64_t i = 0; i < hd; i++) d += q[i] * kc[j * hd + i];
                sc[P + j] = d;
                mx = d > mx ? d : mx;
            }
            float tot = 0.0f;
#pragma omp simd reduction(+ : tot)
            for (int64_t j = 0; j < n_keys; j++) {
                float e = sc[j] == -INFINITY ? 0.0f : fexp(sc[j] - mx);
                sc[j] = e;
                tot += e;
            }
            float inv = 1.0f / tot;
            for (int64_t i = 0; i < hd; i++) o[i] = 0.0f;
            for (int64_t j = 0; j < P; j++) {
                float p = sc[j] * inv;
                if (p != 0.0f)
                    for (int64_t i = 0; i < hd; i++) o[i] += p * vp[j * hd + i];
            }
            for (int64_t j = 0; j <= col; j++) {
                float p = sc[P + j] * inv;
                for (int64_t i = 0; i < hd; i++) o[i] += p * vc[j * hd + i];
            }
            memcpy(out + b * nh * hd + h * hd, o, hd * sizeof(float));
        }
    }
    return 0;
}

/* Next token of each row from logits [B, V]: greedy (inv_temp == 0: first maximum) or the
   inverse CDF of softmax(logits * inv_temp) at u[b] (the first index whose cumulative mass
   exceeds u[b] times the total), with `banned` ids (distinct) excluded; work [V] is scratch.
   ent (NULL: not wanted; sampling only) receives each row's entropy of the softmax over the
   whole vocabulary, banned ids included, log Z - sum p z, from the same pass. Returns 0, 1
   when some row's logits are not finite (diverged weights), as torch.multinomial would, or 2
   when a banned id is not in [0, V). */
int sample_rows(const float *logits, int64_t B, int64_t V, float inv_temp, const float *u,
                const int64_t *banned, int64_t n_banned, float *work, int64_t *out, float *ent) {
    for (int64_t k = 0; k < n_banned; k++)
        if (banned[k] < 0 || banned[k] >= V) return 2;
    for (int64_t b = 0; b < B; b++) {
        const float *l = logits + b * V;
        memcpy(work, l, V * sizeof(float));
        for (int64_t k = 0; k < n_banned; k++) work[banned[k]] = -INFINITY;
        int64_t best = 0;
        float mx = work[0];
        int finite = 1;
        for (int64_t j = 0; j < V; j++) {
            finite &= !isnan(work[j]) && work[j] != INFINITY;
            if (work[j] > mx) { mx = work[j]; best = j; }
        }
        if (!finite || mx == -INFINITY) return 1;
        if (inv_temp == 0.0f) { out[b] = best; continue; }
        float tot = 0.0f, ez = 0.0f;
#pragma omp simd reduction(+ : tot, ez)
        for (int64_t j = 0; j < V; j++) {
            float z = (work[j] - mx) * inv_temp;
            float e = work[j] == -INFINITY ? 0.0f : fexp(z);
            work[j] = e;
            tot += e;
            ez += e == 0.0f ? 0.0f : e * z;
        }
        if (ent) {  /* the banned ids' share of the whole distribution, then its entropy */
            float all = tot, ezall = ez;
            for (int64_t k = 0; k < n_banned; k++) {
                if (l[banned[k]] == -INFINITY) continue;
                float z = (l[banned[k]] - mx) * inv_temp, e = fexp(z);
                all += e;
                ezall += e * z;
            }
            ent[b] = logf(all) - ezall / all;
        }
        float target = u[b] * tot, cum = 0.0f;
        int64_t pick = best;
        for (int64_t j = 0; j < V; j++) {
            if (work[j] == 0.0f) continue;
            cum += work[j];
            pick = j;
            if (cum > target) break;
        }
        out[b] = pick;
    }
    return 0;
}

/* ---- training: forward and backward of the element-wise parts of a layer (rlscale.models.
   native_train). Each is one pass over its rows where torch makes 3-12; rows independent. ---- */

__attribute__((noinline)) static void rms_fwd_row(const float *restrict x, float *restrict y,
                                                  float *restrict s, int64_t n, float eps) {
    float sc = rms_scale(x, n, eps);
    *s = sc;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sc;
}

/* y = x * s, s[row] = rsqrt(mean(x^2) + eps) saved for the backward. x, y [rows, dim]. */
void rms_train_fwd(const float *x, float *y, float *s, int64_t rows, int64_t dim, float eps,
                   int nthreads) {
#pragma omp parallel for num_threads(nthreads) if (rows * dim >= 65536)
    for (int64_t r = 0; r < rows; r++) rms_fwd_row(x + r * dim, y + r * dim, s + r, dim, eps);
}

__attribute__((noinline)) static void rms_bwd_row(const float *restrict g,
                                                  const float *restrict y, float sc,
                                                  float *restrict dx, int64_t n) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) m += g[i] * y[i];
    m /= (float)n;
    for (int64_t i = 0; i < n; i++) dx[i] = (g[i] - y[i] * m) * sc;
}

/* dx = s (g - y mean(g y)): the backward of rms_train_fwd from its output y and scale s. */
void rms_train_bwd(const float *g, const float *y, const float *s, float *dx, int64_t rows,
                   int64_t dim, int nthreads) {
#pragma omp parallel for num_threads(nthreads) if (rows * dim >= 65536)
    for (int64_t r = 0; r < rows; r++)
        rms_bwd_row(g + r * dim, y + r * dim, s[r], dx + r * dim, dim);
}

__attribute__((noinline)) static void swiglu_bwd_row(const float *restrict g,
                                                     const float *restrict u,
                                                     const float *restrict d,
                                                     float *restrict dg, float *restrict du,
                                                     int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + fexp(-g[i]));
        du[i] = d[i] * g[i] * sig;
        dg[i] = d[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
}

/* The backward of swiglu_rows: dgu[r] = [dact u silu'(g) | dact silu(g)], silu'(g) =
   sig (1 + g (1 - sig)), sig recomputed from gu [rows, 2I]. */
void swiglu_train_bwd(const float *gu, const float *dact, float *dgu, int64_t rows,
                      int64_t inter, int nthreads) {
#pragma omp parallel for num_threads(nthreads) if (rows * inter >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gu + r * 2 * inter;
        float *dg = dgu + r * 2 * inter;
        swiglu_bwd_row(g, g + inter, dact + r * inter, dg, dg + inter, inter);
    }
}

/* One token's H heads: y_h = RoPE(x_h s_h w_h), s_h = rsqrt(mean(x_h^2) + eps). */
__attribute__((noinline)) static void qk_fwd_token(const float *restrict x,
                                                   const float *restrict w,
                                                   const float *restrict c,
                                                   const float *restrict sn, float *restrict y,
                                                   float *restrict s, int64_t H, int64_t hd,
                                                   float eps) {
    int64_t h2 = hd / 2;
    float z[MAX_HEAD_DIM];
    for (int64_t h = 0; h < H; h++) {
        const float *xr = x + h * hd, *wr = w + h * hd;
        float *yr = y + h * hd;
        float sc = rms_scale(xr, hd, eps);
        s[h] = sc;
        for (int64_t i = 0; i < hd; i++) z[i] = xr[i] * sc * wr[i];
        for (int64_t i = 0; i < h2; i++) yr[i] = z[i] * c[i] + z[i + h2] * sn[i];
        for (int64_t i = h2; i < hd; i++) yr[i] = z[i] * c[i] + z[i - h2] * sn[i];
    }
}

/* Per-head RMSNorm with weight, then RoPE, for H heads of T tokens: token t holds its heads at
   x + t xs (xs >= H hd: a view into the fused qkv) and takes RoPE row t % R of cos/sin [R, hd]
   (R = S: rows of S positions 0..S-1; R = T: one row per token); y [T, H, hd] (contiguous), s
   [T, H] the saved scales. Returns 1 without touching memory when hd is odd or above
   MAX_HEAD_DIM or the layout does not fit. */
int qknorm_rope_fwd(const float *x, int64_t xs, const float *w, const float *cos_t,
                    const float *sin_t, float *y, float *s, int64_t T, int64_t R, int64_t H,
                    int64_t hd, float eps, int nthreads) {
    if (hd < 2 || hd % 2 || hd > MAX_HEAD_DIM || xs < H * hd || R < 1) return 1;
#pragma omp parallel for num_threads(nthreads) if (T * H * hd >= 65536)
    for (int64_t t = 0; t < T; t++)
        qk_fwd_token(x + t * xs, w, cos_t + (t % R) * hd, sin_t + (t % R) * hd,
                     y + t * H * hd, s + t * H, H, hd, eps);
    return 0;
}

/* The backward for one token's H heads; adds the weight's gradient into dw [H, hd]. */
__attribute__((noinline)) static void qk_bwd_token(const float *restrict g,
                                                   const float *restrict x,
                                                   const float *restrict w,
                                                   const float *restrict c,
                                                   const float *restrict sn,
                                                   const float *restrict s,
                                                   float *restrict dx, float *restrict dw,
                                                   int64_t H, int64_t hd) {
    int64_t h2 = hd / 2;
    float dz[MAX_HEAD_DIM];
    for (int64_t h = 0; h < H; h++) {
        const float *gr = g + h * hd, *xr = x + h * hd, *wr = w + h * hd;
        float *d = dx + h * hd, *dwr = dw + h * hd, sc = s[h], m = 0.0f;
        for (int64_t k = 0; k < h2; k++) dz[k] = gr[k] * c[k] + gr[k + h2] * sn[k + h2];
        for (int64_t k = h2; k < hd; k++) dz[k] = gr[k] * c[k] + gr[k - h2] * sn[k - h2];
        for (int64_t k = 0; k < hd; k++) {
            float xn = xr[k] * sc;
            dwr[k] += dz[k] * xn;
            dz[k] *= wr[k];
            m += dz[k] * xn;
        }
        m /= (float)hd;
        for (int64_t k = 0; k < hd; k++) d[k] = (dz[k] - xr[k] * sc * m) * sc;
    }
}

/* The backward of qknorm_rope_fwd: dx [T, H, hd] (contiguous) and the weight's gradient, summed
   into dw [nthreads, H, hd] (one zeroed slice per thread; the caller adds them). With z the
   normed, weighted input: dz_k = dy_k c_k + dy_j s_j (j = k +- hd/2: RoPE's transpose),
   dw += dz xn, dx = s (dz w - xn mean(dz w xn)), xn = x s. Returns 1 as the forward does. */
int qknorm_rope_bwd(const float *dy, const float *x, int64_t xs, const float *w,
                    const float *cos_t, const float *sin_t, const float *s, float *dx, float *dw,
                    int64_t T, int64_t R, int64_t H, int64_t hd, int nthreads) {
    if (hd < 2 || hd % 2 || hd > MAX_HEAD_DIM || xs < H * hd || R < 1) return 1;
#pragma omp parallel num_threads(nthreads) if (T * H * hd >= 65536)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
#pragma omp for
        for (int64_t t = 0; t < T; t++)
            qk_bwd_token(dy + t * H * hd, x + t * xs, w, cos_t + (t % R) * hd,
                         sin_t + (t % R) * hd, s + t * H, dx + t * H * hd, dw + tid * H * hd, H,
                         hd);
    }
    return 0;
}

/* One row of ce_train_fwd: d = w (softmax(x) - onehot(y)); returns logsumexp(x) - x[y]. */
__attribute__((noinline)) static float ce_row(const float *restrict x, int64_t y, float w,
                                              float *restrict d, int64_t V) {
    float mx = -INFINITY, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; j++) {
        d[j] = fexp(x[j] - mx);
        sum += d[j];
    }
    float scale = w / sum;
    for (int64_t j = 0; j < V; j++) d[j] *= scale;
    d[y] -= w;
    return mx + logf(sum) - x[y];
}

/* Weighted softmax cross-entropy of logits x [T, V] against targets y [T], its gradient in the
   same pass: loss[0] = sum_t w[t] (logsumexp(x[t]) - x[t, y[t]]) (summed in double) and
   d[t] = w[t] (softmax(x[t]) - onehot(y[t])), the loss's gradient in x. A row stays in L1
   between its two reads; torch's log_softmax + nll_loss and their backward make ~5 passes over
   [T, V] and a zero fill. Returns 1 without writing when a target is outside [0, V). */
int ce_train_fwd(const float *x, const int64_t *y, const float *w, float *d, float *loss,
                 int64_t T, int64_t V, int nthreads) {
    for (int64_t t = 0; t < T; t++)
        if (y[t] < 0 || y[t] >= V) return 1;
    double total = 0.0;
#pragma omp parallel for num_threads(nthreads) reduction(+ : total) if (T * V >= 65536)
    for (int64_t t = 0; t < T; t++)
        total += (double)w[t] * (double)ce_row(x + t * V, y[t], w[t], d + t * V, V);
    loss[0] = (float)total;
    return 0;
}
