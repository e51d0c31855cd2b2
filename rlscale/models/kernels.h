/* What the C sources of rlscale.models share (kernels.c, attention.c): fp32 exp in plain
   arithmetic. */
#ifndef RLSCALE_KERNELS_H
#define RLSCALE_KERNELS_H
#include <stdint.h>
#include <string.h>

/* exp(x) in fp32: 2^n * p(r), r = x - n ln2, |r| <= ln2/2, degree-7 Taylor polynomial (relative
   error < 1e-8 before rounding). Plain arithmetic, so loops calling it vectorize. */
static inline float fexp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round to nearest */
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
