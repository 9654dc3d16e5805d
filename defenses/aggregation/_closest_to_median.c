/* Per coordinate, the mean of the `keep` values closest to the median of selected rows.
 *
 * Bulyan's coordinate phase (El Mhamdi et al., ICML 2018). Python side and the maths:
 * defenses/aggregation/native.py and krum.trimmed_around_median (the reference this
 * kernel must equal). Built by setuptools as a plain shared library and called through
 * ctypes, which releases the GIL, so Python threads run column ranges in parallel.
 *
 * Why a kernel: the NumPy path sorts all θ selected values of every coordinate, which
 * costs about as much as the Gram product Bulyan already pays. Here a block of BLOCK
 * coordinates is gathered into a cache-resident buffer and a comparator network, pruned
 * to the order statistics the trim reads, runs across the block with SIMD min/max. The
 * network (ci[q], cj[q]) is built in Python; every comparator puts the smaller value on
 * wire ci[q] < cj[q].
 *
 * Inputs must be finite (aggregators reject non-finite updates first): the build uses
 * -ffinite-math-only so that fminf/fmaxf compile to single SIMD instructions.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 128 /* coordinates per block: θ × 512 B of buffer, L1-resident for θ ≲ 90 */

__attribute__((target_clones("avx512f", "avx2", "default")))
int closest_to_median_mean_f32(const float *x, int64_t d, const int64_t *rows, int32_t theta,
                               const int32_t *ci, const int32_t *cj, int32_t comparators,
                               int32_t lo, int32_t hi, int32_t keep,
                               int64_t first, int64_t last, float *out)
{
    /* x: [n, d] row-major; rows: the θ selected row indices; [lo, hi): the band of order
     * statistics that holds the kept window (see trimmed_around_median); out[first:last]
     * is written. Returns 0, or -1 when the buffer cannot be allocated. */
    const int32_t band = hi - lo, drop = band - keep, mid = lo + band / 2;
    float *buf = aligned_alloc(64, sizeof(float) * (size_t)theta * BLOCK);
    if (buf == NULL)
        return -1;
    for (int64_t start = first; start < last; start += BLOCK) {
        const int64_t width = last - start < BLOCK ? last - start : BLOCK;
        for (int32_t r = 0; r < theta; ++r) {
            float *dst = buf + (size_t)r * BLOCK;
            memcpy(dst, x + rows[r] * d + start, sizeof(float) * (size_t)width);
            for (int64_t c = width; c < BLOCK; ++c)
                dst[c] = 0.0f;
        }
        /* While the network runs on this block, prefetch the next one, a few cache lines per
         * comparator: the gather of θ row segments is memory-bound and the network is
         * compute-bound, so spreading the loads over it overlaps the two (~25 % faster). */
        const int64_t next = start + BLOCK;
        const int32_t lines_per_row = BLOCK / 16, lines = next < last ? theta * lines_per_row : 0;
        const int32_t per_comparator = comparators > 0 ? (lines + comparators - 1) / comparators : 0;
        for (int32_t q = 0; q < comparators; ++q) {
            for (int32_t l = q * per_comparator; l < (q + 1) * per_comparator && l < lines; ++l)
                __builtin_prefetch(x + rows[l / lines_per_row] * d + next + (l % lines_per_row) * 16, 0, 3);
            float *restrict low = buf + (size_t)ci[q] * BLOCK;
            float *restrict high = buf + (size_t)cj[q] * BLOCK;
            for (int c = 0; c < BLOCK; ++c) {
                const float u = low[c], v = high[c];
                low[c] = fminf(u, v);
                high[c] = fmaxf(u, v);
            }
        }
        /* Sorted band s = buf[lo:hi]. Drop s[t] (t < j) from below and the rest from above,
         * where j = #{t < drop : s[t] + s[keep + t] < 2·median}; keep s[j : j + keep]. */
        const float *s = buf + (size_t)lo * BLOCK;
        const float *upper_mid = buf + (size_t)mid * BLOCK;
        const float *lower_mid = buf + (size_t)(band % 2 ? mid : mid - 1) * BLOCK;
        for (int64_t c = 0; c < width; ++c) {
            const float twice_median = lower_mid[c] + upper_mid[c];
            int32_t j = 0;
            for (int32_t t = 0; t < drop; ++t)
                j += s[(size_t)t * BLOCK + c] + s[(size_t)(keep + t) * BLOCK + c] < twice_median;
            float sum = 0.0f;
            for (int32_t t = 0; t < keep; ++t)
                sum += s[(size_t)(j + t) * BLOCK + c];
            out[start + c] = sum / (float)keep;
        }
    }
    free(buf);
    return 0;
}
