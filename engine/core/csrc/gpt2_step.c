/* One GPT-2 decoding step on the CPU, for batch 1: token in, logits out, the KV cache updated.
 *
 * Decoding reads every weight once per token, so its speed is how fast the weights stream from
 * memory. PyTorch pays for that step in ~250 small operator calls and a thread fork/join for each
 * product; here the whole step is one call, run by the caller's thread and threads-1 helper threads
 * that this library keeps between calls, and every matrix is multiplied by a kernel written for its
 * storage:
 *
 *   F32_COLS  float32 [n_in, n_out] (GPT-2's Conv1D layout; the float32 head is stored this way too)
 *   F32_ROWS  float32 [n_out, n_in]
 *   F16_ROWS  float16 [n_out, n_in]
 *   BF16_ROWS bfloat16 [n_out, n_in]
 *   Q8_BLOCKS int8 weights in blocks of 32 with one float16 scale per block (llama.cpp's q8_0), rows
 *             interleaved in groups of 8: nb = ceil(n_in / 32) blocks per row, G = ceil(n_out / 8)
 *             groups (the last padded with zero rows). w is [G, nb, 8 chunks, 8 rows, 4]: chunk c of
 *             block b holds weights 4c..4c+3 of each of the group's 8 rows; scale is [G, nb, 8].
 *   Q4_BLOCKS 4-bit weights in blocks of 32 (llama.cpp's q4_0: each stored + 8, one float16 scale per
 *             block), interleaved as Q8_BLOCKS: w is [G, nb, 4 chunks, 8 rows, 4] bytes whose low nibble
 *             is weight 4c + t of its row and whose high nibble is weight 16 + 4c + t; scale [G, nb, 8].
 *             Its input is quantised as Q8_BLOCKS'.
 *
 * Interleaving puts four weights of each of 8 rows side by side in 32 bytes, so one integer
 * multiply-add (VNNI's dpbusd, AVX2's maddubs) with four input values broadcast computes a piece of
 * 8 rows' dot products at once, one row per 32-bit lane: no horizontal sums, and one fused
 * multiply-add of the 8 rows' block scales per block of 8 rows.
 *
 * A float matrix may ask for its input rounded to bfloat16 first (the bfloat16 mode does, so that
 * decoding computes what its batched PyTorch path computes). A Q8_BLOCKS or Q4_BLOCKS matrix quantises
 * its input as Q8_BLOCKS' weights are, per block of 32 (d = max|x| / 127, q = round(x / d)), and multiplies
 * with integer instructions: each block's dot product is an exact int32, scaled by the two blocks'
 * scales into a float32 sum. Accumulation is float32 throughout.
 *
 * Threads never wait for each other at barriers: each product is cut into chunks of output rows that
 * any thread may claim, and a thread that the OS takes off its core (another program wants the core)
 * has its chunk computed again by the others (see "the step as a list of phases" below). So a busy
 * CPU slows the step by the share of the cores it takes, not by a time slice per barrier. Every
 * output is computed by the same code whichever thread computes it: the thread count never changes
 * the logits.
 *
 * The contract with engine/core/native.py, which loads this file's library through ctypes:
 *   - Mat, Layer and Model below are mirrored there as ctypes structures. gpt2_struct_layout reports
 *     their sizes and their fields' offsets and sizes; native.py refuses the library if they disagree.
 *   - gpt2_abi_version returns GPT2_ABI_VERSION, which native.py's ABI_VERSION must equal: bump both
 *     whenever an exported function's signature or meaning changes.
 *   - gpt2_workspace_floats says how many floats of scratch memory gpt2_step needs for a thread
 *     count and a cache length; the caller allocates them (64-byte aligned is best, see take())
 *     and passes them to every gpt2_step with that thread count and cache length.
 *   - Nothing here allocates memory; the weights are read in place. The only state kept between
 *     calls is the helper threads (started on first use, asleep when idle) and their bookkeeping.
 *   - A helper thread may still be reading a step's memory (never writing it) after gpt2_step has
 *     returned: the caller keeps the model, the caches and the workspace of its last step alive,
 *     and calls gpt2_wait_idle before it frees or replaces any of them.
 *   - Linux x86-64, built with AVX2, FMA and F16C, so one build runs on any x86-64 CPU with AVX2
 *     (native.py checks the CPU before calling anything). Kernels for wider instruction sets are
 *     compiled as functions of their own (__attribute__((target(...)))) and chosen at run time by
 *     what the CPU reports (__builtin_cpu_supports): see KERNEL_SETS. gpt2_use_kernels picks one by
 *     name ("auto" = the best this CPU runs; native.py passes GPT2_DESKTOP_CPU).
 */

#define _GNU_SOURCE
#include <immintrin.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GPT2_ABI_VERSION 8

enum { F32_COLS = 0, F32_ROWS = 1, F16_ROWS = 2, BF16_ROWS = 3, Q8_BLOCKS = 4, Q4_BLOCKS = 5 };
enum { QBLOCK = 32 }; /* weights (and input values) per scale in Q8_BLOCKS and Q4_BLOCKS */
enum { GROUP = 8 };   /* rows interleaved together in Q8_BLOCKS and Q4_BLOCKS */
enum { ACT_GELU_TANH = 0, ACT_GELU_ERF = 1, ACT_RELU = 2 };
enum { OUT_STORE = 0, OUT_ADD = 1, OUT_ACT = 2 };
enum { LINE_FLOATS = 16 }; /* floats in a 64-byte cache line */
enum { MAX_CHUNKS = 64 };     /* chunks in a phase of the step, at most (see describe_phase) */
_Static_assert(LINE_FLOATS % GROUP == 0, "chunks of whole lines are whole groups");

/* n floats rounded up to whole cache lines. */
static inline long long whole_lines(long long n) { return (n + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS; }

/* The shapes below: C = n_embd, H = n_head, D = C / H (head_dim), V = vocab, L = n_layer. */

/* One matrix product y = x W (+ bias), x of n_in floats, y of n_out. */
typedef struct {
    int32_t kind;       // how w is stored: F32_COLS, F32_ROWS, F16_ROWS, BF16_ROWS, Q8_BLOCKS or Q4_BLOCKS
    int32_t n_in;       // input width
    int32_t n_out;      // output width
    int32_t round_bf16; // 1: round the input to bfloat16 before multiplying, else 0 (float kinds only)
    const void *w;      // (n_out, n_in) rows, or (n_in, n_out) for F32_COLS, (G, nb * 256) for Q8_BLOCKS,
                        // (G, nb * 128) for Q4_BLOCKS (see above)
    const void *scale;  // (G, nb * 8) float16 for Q8_BLOCKS and Q4_BLOCKS: one per block of 32 weights; else NULL
    const float *bias;  // (n_out,) or NULL
} Mat;

typedef struct {
    const float *ln1_w; // (C,) the layer norm before attention
    const float *ln1_b; // (C,)
    const float *ln2_w; // (C,) the layer norm before the MLP
    const float *ln2_b; // (C,)
    Mat qkv;            // C -> 3C: query, key and value, each (H, D) heads side by side
    Mat attn_proj;      // C -> C
    Mat fc;             // C -> n_inner, followed by the activation
    Mat mlp_proj;       // n_inner -> C
    float attn_scale;   // scalar: multiplies q.k before the softmax
} Layer;

typedef struct {
    int32_t n_layer;     // L
    int32_t n_head;      // H
    int32_t n_embd;      // C
    int32_t n_inner;     // the MLP's hidden width
    int32_t vocab;       // V
    int32_t activation;  // the MLP's: ACT_GELU_TANH, ACT_GELU_ERF or ACT_RELU
    float eps;           // the layer norms' epsilon
    Mat wte;             // C -> V, the token embedding as the tied head's matrix: a token's vector is
                         // row `token` of (V, C), or column `token` of (C, V) for F32_COLS; no bias
    const float *wpe;    // (n_positions, C) the position embedding
    const float *lnf_w;  // (C,) the final layer norm
    const float *lnf_b;  // (C,)
    Mat head;            // C -> V: the logits (often the same memory as wte)
    const Layer *layers; // (L,)
} Model;

/* ---- small vector helpers ---- */

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x, Cephes' polynomial: relative error about 2e-7 over the float range. */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline float bf16_round(float f) { /* round to nearest even, as PyTorch's .bfloat16() */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static void activate(float *y, int n, int kind) {
    int i = 0;
    if (kind == ACT_GELU_TANH) {
        /* 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), tanh(u) = 1 - 2 / (e^{2u} + 1) */
        const __m256 k0 = _mm256_set1_ps(0.7978845608028654f), k1 = _mm256_set1_ps(0.044715f);
        const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
        for (; i + 8 <= n; i += 8) {
            __m256 x = _mm256_loadu_ps(y + i);
            __m256 u = _mm256_mul_ps(k0, _mm256_fmadd_ps(_mm256_mul_ps(k1, x), _mm256_mul_ps(x, x), x));
            __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(exp256(_mm256_mul_ps(two, u)), one)));
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, t)));
        }
        for (; i < n; i++) {
            float x = y[i];
            y[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        }
    } else if (kind == ACT_GELU_ERF) {
        for (; i < n; i++) y[i] = 0.5f * y[i] * (1.0f + erff(y[i] * 0.70710678118654752f));
    } else {
        for (; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    }
}

static void layer_norm(const float *x, const float *w, const float *b, float *y, int n, float eps) {
    float mean = 0.0f, var = 0.0f;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    float inv = 1.0f / sqrtf(var / n + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* ---- dot products of one stored row with a float32 vector ---- */

/* Each loads 8 stored weights as 8 floats (LOAD_*) or one (SCALAR_*). */
#define LOAD_F32(p) _mm256_loadu_ps(p)
#define SCALAR_F32(v) (v)
#define LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define SCALAR_F16(v) _cvtsh_ss(v)
#define LOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define SCALAR_BF16(v) bf16_to_f32(v)

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* One function per storage type: four accumulators over 32 weights at a time, then the tail. */
#define DEFINE_DOT(name, type, LOAD, SCALAR)                                                     \
    static float name(const type *w, const float *x, int n) {                                    \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                              \
        int i = 0;                                                                               \
        for (; i + 32 <= n; i += 32) {                                                           \
            a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0);                       \
            a1 = _mm256_fmadd_ps(LOAD(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);               \
            a2 = _mm256_fmadd_ps(LOAD(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);             \
            a3 = _mm256_fmadd_ps(LOAD(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);             \
        }                                                                                        \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0); \
        float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));            \
        for (; i < n; i++) s += SCALAR(w[i]) * x[i];                                             \
        return s;                                                                                \
    }

DEFINE_DOT(dot_f32, float, LOAD_F32, SCALAR_F32)
DEFINE_DOT(dot_f16, uint16_t, LOAD_F16, SCALAR_F16)
DEFINE_DOT(dot_bf16, uint16_t, LOAD_BF16, SCALAR_BF16)

/* ---- integer kernels: blocks of 32, rows interleaved in groups of 8 (Q8_BLOCKS, Q4_BLOCKS) ---- */

/* A product's input, quantised per block of 32 as the weights are. */
typedef struct {
    int8_t *q;    // (nb * 32,) round(x / d), zero past n_in
    uint8_t *a;   // (nb * 32,) |q|: maddubs multiplies unsigned bytes by signed ones
    float *d;     // (nb,) max |x| / 127 of each block
    int32_t *sum; // (nb,) the sum of each block's q: the kernels store weights offset to unsigned bytes
                  // (w + 8 for Q4_BLOCKS, w + 128 in VNNI's Q8_BLOCKS) and take offset * sum back out
} QInput;

/* Block b of x (32 values from i0, n in all; zeros past n) as the step quantises it; the plain C form,
 * for a block that ends past n. */
static void quantize_block_tail(const float *x, int n, int b, QInput *in) {
    const int i0 = b * QBLOCK, i1 = i0 + QBLOCK < n ? i0 + QBLOCK : n;
    float amax = 0.0f;
    for (int i = i0; i < i1; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    const float d = amax / 127.0f;
    int32_t sum = 0;
    in->d[b] = d;
    for (int i = i0; i < i0 + QBLOCK; i++) {
        float v = i < i1 && d > 0.0f ? rintf(x[i] / d) : 0.0f; /* rintf: to nearest even, as torch.round */
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        in->q[i] = (int8_t)v;
        in->a[i] = (uint8_t)(v < 0 ? -v : v);
        sum += (int32_t)v;
    }
    in->sum[b] = sum;
}

/* x [n] quantised per block of 32: d = max|x| / 127, q = round(x / d) (a true division, rounded to
 * nearest even, as torch does it), |q|, and the sum of each block's q. */
static void quantize_input(const float *x, int n, QInput *in) {
    const int nb = (n + QBLOCK - 1) / QBLOCK;
    const __m256 sign = _mm256_set1_ps(-0.0f), top = _mm256_set1_ps(127.0f), bottom = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int b = 0;
    for (; b < nb && (b + 1) * QBLOCK <= n; b++) {
        const float *xb = x + b * QBLOCK;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k] = _mm256_loadu_ps(xb + 8 * k)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float d = _mm_cvtss_f32(m4) / 127.0f;
        in->d[b] = d;
        if (!(d > 0.0f)) {
            memset(in->q + b * QBLOCK, 0, QBLOCK);
            memset(in->a + b * QBLOCK, 0, QBLOCK);
            in->sum[b] = 0;
            continue;
        }
        const __m256 dv = _mm256_set1_ps(d);
        __m256i r[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_round_ps(_mm256_div_ps(v[k], dv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, bottom), top));
        }
        const __m256i s = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        in->sum[b] = _mm_cvtsi128_si32(s4);
        const __m256i bytes = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3])), order);
        _mm256_storeu_si256((__m256i *)(in->q + b * QBLOCK), bytes);
        _mm256_storeu_si256((__m256i *)(in->a + b * QBLOCK), _mm256_abs_epi8(bytes));
    }
    for (; b < nb; b++) quantize_block_tail(x, n, b, in);
}

/* Every kernel below computes one group of 8 rows, out[j] for row j, as: for each block b in order,
 * acc[j] = fma((float)dot_jb, scale_jb * d_b, acc[j]), where dot_jb is the block's exact int32 dot
 * product and scale_jb * d_b is rounded to float32 first. The same float operations in the same order
 * in every kernel set: the same result to the bit. */

/* The reference, in plain C. */
static void group_q8_ref(const int8_t *w, const uint16_t *scale, const QInput *in, int nb, float *out) {
    float acc[GROUP] = {0};
    for (int b = 0; b < nb; b++) {
        const int8_t *wb = w + (size_t)b * GROUP * QBLOCK;
        for (int j = 0; j < GROUP; j++) {
            int32_t dot = 0;
            for (int k = 0; k < QBLOCK; k++) dot += (int32_t)wb[(k / 4) * 32 + j * 4 + k % 4] * in->q[b * QBLOCK + k];
            acc[j] = fmaf((float)dot, _cvtsh_ss(scale[b * GROUP + j]) * in->d[b], acc[j]);
        }
    }
    memcpy(out, acc, sizeof acc);
}

static void group_q4_ref(const uint8_t *w, const uint16_t *scale, const QInput *in, int nb, float *out) {
    float acc[GROUP] = {0};
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = w + (size_t)b * GROUP * QBLOCK / 2;
        for (int j = 0; j < GROUP; j++) {
            int32_t dot = 0;
            for (int k = 0; k < QBLOCK / 2; k++) {
                const uint8_t byte = wb[(k / 4) * 32 + j * 4 + k % 4];
                dot += ((int32_t)(byte & 15) - 8) * in->q[b * QBLOCK + k];
                dot += ((int32_t)(byte >> 4) - 8) * in->q[b * QBLOCK + k + QBLOCK / 2];
            }
            acc[j] = fmaf((float)dot, _cvtsh_ss(scale[b * GROUP + j]) * in->d[b], acc[j]);
        }
    }
    memcpy(out, acc, sizeof acc);
}

/* Four input bytes at p, the same in each 32-bit lane. */
static inline __m256i broadcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* The 8 rows' scales of block b times the input's d_b, one lane per row. */
static inline __m256 block_scales(const uint16_t *scale, const QInput *in, int b) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scale + b * GROUP))),
                         _mm256_set1_ps(in->d[b]));
}

/* AVX2, int8: maddubs multiplies unsigned bytes by signed ones, so |x| times w with x's sign (no pair
 * of products overflows int16: 2 * 127 * 127 < 32767); madd sums pairs of int16 into int32 lanes. */
static void group_q8_avx2(const int8_t *w, const uint16_t *scale, const QInput *in, int nb, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const int8_t *wb = w + (size_t)b * GROUP * QBLOCK;
        const int8_t *q = in->q + b * QBLOCK;
        const uint8_t *a = in->a + b * QBLOCK;
        __m256i dot0 = _mm256_setzero_si256(), dot1 = _mm256_setzero_si256();
        for (int c = 0; c < QBLOCK / 4; c += 2) {
            __m256i p0 = _mm256_maddubs_epi16(broadcast4(a + 4 * c),
                                              _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(wb + 32 * c)), broadcast4(q + 4 * c)));
            __m256i p1 = _mm256_maddubs_epi16(broadcast4(a + 4 * c + 4),
                                              _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(wb + 32 * c + 32)), broadcast4(q + 4 * c + 4)));
            dot0 = _mm256_add_epi32(dot0, _mm256_madd_epi16(p0, ones));
            dot1 = _mm256_add_epi32(dot1, _mm256_madd_epi16(p1, ones));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(dot0, dot1)), block_scales(scale, in, b), acc);
    }
    _mm256_storeu_ps(out, acc);
}

/* AVX2, 4-bit: the nibbles are unsigned already (w + 8), so maddubs multiplies them by x directly; its
 * int16 sums stay exact over a whole block (8 * 2 * 15 * 127 < 32767) before one madd widens them, and
 * 8 * sum(x) is taken back out. */
static void group_q4_avx2(const uint8_t *w, const uint16_t *scale, const QInput *in, int nb, float *out) {
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = w + (size_t)b * GROUP * QBLOCK / 2;
        const int8_t *q = in->q + b * QBLOCK;
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        for (int c = 0; c < QBLOCK / 8; c++) {
            const __m256i bytes = _mm256_loadu_si256((const __m256i *)(wb + 32 * c));
            s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(_mm256_and_si256(bytes, low), broadcast4(q + 4 * c)));
            s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low),
                                                           broadcast4(q + QBLOCK / 2 + 4 * c)));
        }
        __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
        dot = _mm256_sub_epi32(dot, _mm256_set1_epi32(8 * in->sum[b]));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), block_scales(scale, in, b), acc);
    }
    _mm256_storeu_ps(out, acc);
}

/* AVX-512 VNNI (its 256-bit form): dpbusd multiplies unsigned bytes by signed ones and adds groups of
 * four into int32 lanes with no intermediate rounding, so int8 weights are flipped to w + 128 (an xor
 * of the sign bit) and 128 * sum(x) is taken back out by starting the sum there. */
#define TARGET_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

TARGET_AVX512VNNI static void group_q8_avx512vnni(const int8_t *w, const uint16_t *scale, const QInput *in, int nb,
                                                  float *out) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const int8_t *wb = w + (size_t)b * GROUP * QBLOCK;
        const int8_t *q = in->q + b * QBLOCK;
        __m256i dot0 = _mm256_set1_epi32(-128 * in->sum[b]), dot1 = _mm256_setzero_si256();
        for (int c = 0; c < QBLOCK / 4; c += 2) {
            dot0 = _mm256_dpbusd_epi32(dot0, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + 32 * c)), flip),
                                       broadcast4(q + 4 * c));
            dot1 = _mm256_dpbusd_epi32(dot1, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + 32 * c + 32)), flip),
                                       broadcast4(q + 4 * c + 4));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(dot0, dot1)), block_scales(scale, in, b), acc);
    }
    _mm256_storeu_ps(out, acc);
}

TARGET_AVX512VNNI static void group_q4_avx512vnni(const uint8_t *w, const uint16_t *scale, const QInput *in, int nb,
                                                  float *out) {
    const __m256i low = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = w + (size_t)b * GROUP * QBLOCK / 2;
        const int8_t *q = in->q + b * QBLOCK;
        __m256i dot0 = _mm256_set1_epi32(-8 * in->sum[b]), dot1 = _mm256_setzero_si256();
        for (int c = 0; c < QBLOCK / 8; c++) {
            const __m256i bytes = _mm256_loadu_si256((const __m256i *)(wb + 32 * c));
            dot0 = _mm256_dpbusd_epi32(dot0, _mm256_and_si256(bytes, low), broadcast4(q + 4 * c));
            dot1 = _mm256_dpbusd_epi32(dot1, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low),
                                       broadcast4(q + QBLOCK / 2 + 4 * c));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(dot0, dot1)), block_scales(scale, in, b), acc);
    }
    _mm256_storeu_ps(out, acc);
}

static int has_avx512vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* ---- kernel sets: the integer kernels for each instruction set, chosen at run time ---- */

typedef void (*GroupQ8)(const int8_t *w, const uint16_t *scale, const QInput *in, int nb, float *out);
typedef void (*GroupQ4)(const uint8_t *w, const uint16_t *scale, const QInput *in, int nb, float *out);

typedef struct {
    const char *name; // what gpt2_use_kernels and GPT2_DESKTOP_CPU call it
    int (*supported)(void);
    GroupQ8 group_q8;
    GroupQ4 group_q4;
} KernelSet;

static int always(void) { return 1; }

/* Best first: "auto" takes the first this CPU supports. */
static const KernelSet KERNEL_SETS[] = {
    {"avx512vnni", has_avx512vnni, group_q8_avx512vnni, group_q4_avx512vnni},
    {"avx2", always, group_q8_avx2, group_q4_avx2},
    {"reference", always, group_q8_ref, group_q4_ref},
};
enum { N_KERNEL_SETS = sizeof KERNEL_SETS / sizeof KERNEL_SETS[0] };

static const KernelSet *kernels = &KERNEL_SETS[0];

/* acc[0 : c1-c0] = x @ W[:, c0:c1] for W [n_in, n_out], four input rows at a time (four streams). */
static void cols_f32(const float *W, int n_in, int n_out, const float *x, int c0, int c1, float *acc) {
    int width = c1 - c0;
    memset(acc, 0, sizeof(float) * width);
    int i = 0;
    for (; i + 4 <= n_in; i += 4) {
        const float *r0 = W + (size_t)i * n_out + c0, *r1 = r0 + n_out, *r2 = r1 + n_out, *r3 = r2 + n_out;
        __m256 x0 = _mm256_set1_ps(x[i]), x1 = _mm256_set1_ps(x[i + 1]);
        __m256 x2 = _mm256_set1_ps(x[i + 2]), x3 = _mm256_set1_ps(x[i + 3]);
        int c = 0;
        for (; c + 8 <= width; c += 8) {
            __m256 v = _mm256_loadu_ps(acc + c);
            v = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r0 + c), v);
            v = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r1 + c), v);
            v = _mm256_fmadd_ps(x2, _mm256_loadu_ps(r2 + c), v);
            v = _mm256_fmadd_ps(x3, _mm256_loadu_ps(r3 + c), v);
            _mm256_storeu_ps(acc + c, v);
        }
        for (; c < width; c++) acc[c] += x[i] * r0[c] + x[i + 1] * r1[c] + x[i + 2] * r2[c] + x[i + 3] * r3[c];
    }
    for (; i < n_in; i++) {
        const float *r = W + (size_t)i * n_out + c0;
        for (int c = 0; c < width; c++) acc[c] += x[i] * r[c];
    }
}

static void embed(const Model *m, int token, int pos, float *x) {
    const Mat *e = &m->wte;
    int n = m->n_embd;
    const float *wpe = m->wpe + (size_t)pos * n;
    for (int i = 0; i < n; i++) {
        float v;
        switch (e->kind) {
        case F32_COLS: v = ((const float *)e->w)[(size_t)i * m->vocab + token]; break;
        case F32_ROWS: v = ((const float *)e->w)[(size_t)token * n + i]; break;
        case F16_ROWS: v = _cvtsh_ss(((const uint16_t *)e->w)[(size_t)token * n + i]); break;
        case BF16_ROWS: v = bf16_to_f32(((const uint16_t *)e->w)[(size_t)token * n + i]); break;
        default: { /* Q8_BLOCKS or Q4_BLOCKS: row `token` is row j of group g */
            const size_t nb = (n + QBLOCK - 1) / QBLOCK, g = token / GROUP, j = token % GROUP, b = i / QBLOCK;
            const int k = i % QBLOCK;
            const float scale = _cvtsh_ss(((const uint16_t *)e->scale)[(g * nb + b) * GROUP + j]);
            if (e->kind == Q8_BLOCKS) {
                v = (float)((const int8_t *)e->w)[((g * nb + b) * GROUP * QBLOCK) + (k / 4) * 32 + j * 4 + k % 4] * scale;
            } else {
                const uint8_t byte =
                    ((const uint8_t *)e->w)[((g * nb + b) * GROUP * QBLOCK / 2) + ((k % 16) / 4) * 32 + j * 4 + k % 4];
                v = (float)((k < 16 ? byte & 15 : byte >> 4) - 8) * scale;
            }
        }
        }
        x[i] = v + wpe[i];
    }
}

/* x[i] = e^(x[i] - top) for i < n; returns their sum. */
static float exp_in_place(float *x, int n, float top) {
    __m256 sum8 = _mm256_setzero_ps(), top8 = _mm256_set1_ps(top);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), top8));
        _mm256_storeu_ps(x + i, e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    float sum = hsum(sum8);
    for (; i < n; i++) {
        x[i] = expf(x[i] - top);
        sum += x[i];
    }
    return sum;
}

/* One head's attention for the new token at `pos`, into `out` (d floats): its query q attends to the
 * cached keys and values of positions 0..pos-1 (K and V are that head's [cache_len, d] slices) and to
 * its own k_new and v_new, which the caller writes into the cache afterwards. `s` is scratch. */
static void attend(const float *q, const float *k_new, const float *v_new, const float *K, const float *V, int pos,
                   int d, float scale, float *s, float *out) {
    int n = pos + 1;
    float top = -INFINITY;
    for (int t = 0; t < n; t++) {
        s[t] = dot_f32(t < pos ? K + (size_t)t * d : k_new, q, d) * scale;
        top = s[t] > top ? s[t] : top;
    }
    float inv = 1.0f / exp_in_place(s, n, top);
    /* out = sum over t of (s[t] * inv) v_t, 64 outputs at a time held in registers across t (the same
     * multiply-adds in the same order as one output at a time) */
    int j = 0;
    for (; j + 64 <= d; j += 64) {
        __m256 o[8];
        for (int k = 0; k < 8; k++) o[k] = _mm256_setzero_ps();
        for (int t = 0; t < n; t++) {
            const float *v = (t < pos ? V + (size_t)t * d : v_new) + j;
            const __m256 p8 = _mm256_set1_ps(s[t] * inv);
            for (int k = 0; k < 8; k++) o[k] = _mm256_fmadd_ps(p8, _mm256_loadu_ps(v + 8 * k), o[k]);
        }
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(out + j + 8 * k, o[k]);
    }
    for (int i = j; i < d; i++) out[i] = 0.0f;
    for (int t = 0; t < n && j < d; t++) {
        const float *v = t < pos ? V + (size_t)t * d : v_new;
        const float p = s[t] * inv;
        int i = j;
        __m256 p8 = _mm256_set1_ps(p);
        for (; i + 8 <= d; i += 8)
            _mm256_storeu_ps(out + i, _mm256_fmadd_ps(p8, _mm256_loadu_ps(v + i), _mm256_loadu_ps(out + i)));
        for (; i < d; i++) out[i] = fmaf(p, v[i], out[i]);
    }
}

static int max_in(const Model *m) { return m->n_inner > m->n_embd ? m->n_inner : m->n_embd; }

static int max_out(const Model *m) {
    int a = 3 * m->n_embd > m->n_inner ? 3 * m->n_embd : m->n_inner;
    return a > m->head.n_out ? a : m->head.n_out;
}

/* ---- the workspace: the step's scratch memory, one float buffer from the caller ---- */

typedef struct {
    float *x;                // (C,) the residual stream
    float *xn;               // (C,) x layer-normed: the input of the next qkv, fc or head product
    float *att;              // (C,) the attention's output, (H, D) heads side by side
    float *qkv;              // (3C,) the new token's query, key and value
    float *hid;              // (n_inner,) the MLP's hidden activations
    float *xin;              // (max_in,) the current product's input rounded to bfloat16, where it asks
    QInput xq;               // the current integer product's input quantised: (max_in padded to 32) bytes
                             // q and a, (max_in / 32) scales d and sums
    float *head_max;         // (MAX_CHUNKS,) each head chunk's largest logit,
    float *head_sum;         // (MAX_CHUNKS,) the sum of exp(logit - that largest) over the chunk,
    int32_t *head_arg;       // (MAX_CHUNKS,) and where the largest first is
    /* Each thread's own scratch. These are thread 0's; thread t's are these plus t * thread_stride. */
    float *acc;              // (max_out,) one chunk's outputs, or one head's attention output
    float *s;                // (cache_len,) one head's attention weights
    long long thread_stride; // floats from one thread's scratch to the next
} Workspace;

/* Hands out the next n floats of the buffer at `base`, or NULL where base is NULL (sizing only).
 * Every array takes whole cache lines, so each starts on a line of its own in a 64-byte-aligned
 * buffer (as torch's CPU allocator gives): threads writing neighbouring arrays, or their chunks of
 * one array (see matvec_rows), never write the same line. An unaligned buffer is still correct. */
static float *take(float *base, long long *used, long long n) {
    float *p = base ? base + *used : NULL;
    *used += whole_lines(n);
    return p;
}

/* Lays out the workspace for `threads` threads and a cache of `cache_len` positions: fills *w with
 * pointers into `base` (all NULL where base is NULL) and returns the floats it takes in all. */
static long long workspace_layout(const Model *m, int threads, int cache_len, float *base, Workspace *w) {
    const int C = m->n_embd;
    long long used = 0;
    w->x = take(base, &used, C);
    w->xn = take(base, &used, C);
    w->att = take(base, &used, C);
    w->qkv = take(base, &used, 3LL * C);
    w->hid = take(base, &used, m->n_inner);
    w->xin = take(base, &used, max_in(m));
    const long long padded = (max_in(m) + QBLOCK - 1) / QBLOCK * QBLOCK;
    w->xq.q = (int8_t *)take(base, &used, padded / 4);
    w->xq.a = (uint8_t *)take(base, &used, padded / 4);
    w->xq.d = take(base, &used, padded / QBLOCK);
    w->xq.sum = (int32_t *)take(base, &used, padded / QBLOCK);
    w->head_max = take(base, &used, MAX_CHUNKS);
    w->head_sum = take(base, &used, MAX_CHUNKS);
    w->head_arg = (int32_t *)take(base, &used, MAX_CHUNKS);
    const long long shared = used;
    w->acc = take(base, &used, max_out(m));
    w->s = take(base, &used, cache_len);
    w->thread_stride = used - shared;
    return shared + w->thread_stride * threads;
}

/* Floats of scratch memory gpt2_step needs with `threads` threads and a cache of `cache_len`. */
long long gpt2_workspace_floats(const Model *m, int threads, int cache_len) {
    Workspace w;
    return workspace_layout(m, threads, cache_len, NULL, &w);
}

/* ---- the step as a list of phases, each a list of chunks ----
 *
 * A token's step is 5 phases per layer (qkv, attention, attn_proj, fc, mlp_proj) and the head. A phase's
 * chunks are independent (a run of output rows, or a head) and any thread may compute any of them: a
 * thread claims the next unclaimed chunk, computes it into its own scratch, then commits it (copies or
 * adds it into the shared output) under a compare-and-swap, so each chunk is committed exactly once.
 * A thread with nothing left to claim that has waited a while for a chunk another thread holds computes
 * that chunk too, and whichever finishes first commits it: a thread the OS has taken off its core (another
 * program wants it) delays nobody. The thread that commits a phase's last chunk opens the next phase: its
 * serial part first (a layer norm, rounding the input), then its chunks. */

enum { PH_QKV = 0, PH_ATTEND = 1, PH_ATTN_PROJ = 2, PH_FC = 3, PH_MLP_PROJ = 4, PHASES_PER_LAYER = 5 };
/* A product's chunks: a few per thread, so that a thread taken off its core holds up little, but long
 * runs of rows, each streamed from memory as one sequence (the hardware prefetcher ramps up anew at the
 * start of each: with 64 chunks a phase the integer kernels read ~20% slower). */
enum { MIN_CHUNK_ROWS = 16, CHUNKS_PER_THREAD = 4 };

typedef struct {
    int kind;         // PH_QKV .. PH_MLP_PROJ, or PH_QKV with layer == n_layer for the head
    int layer;        // which layer, n_layer for the head
    const Mat *mat;   // the product, NULL for PH_ATTEND
    const float *in;  // the product's input
    float *out;       // where its chunks are committed
    int mode;         // OUT_STORE, OUT_ADD or OUT_ACT
    int rows;         // output rows (or heads) per chunk
    int n_chunks;     // <= MAX_CHUNKS
} Phase;

/* What one step computes: written by the thread that calls gpt2_step before any phase opens, read-only
 * afterwards. */
typedef struct {
    const Model *m;
    int token, pos, cache_len, threads;
    float *k_cache, *v_cache; // (L, 1, H, cache_len, D)
    float *logits;            // (V,)
    int32_t *argmax;          // out: the index of the largest logit (the first, if several)
    float *logsumexp;         // out: log(sum(exp(logits))), so that log_softmax(logits) = logits - it
    Workspace w;
    int n_phases;             // 5 L + 1
    uint32_t first_serial;    // the serial number of phase 0; phase k's is first_serial + k
    uint32_t seq;             // the step's number (Pool.step_seq)
} Step;

static void describe_phase(const Step *st, int k, Phase *ph) {
    const Model *m = st->m;
    const Workspace *w = &st->w;
    ph->layer = k / PHASES_PER_LAYER;
    ph->kind = k % PHASES_PER_LAYER;
    ph->mode = OUT_STORE;
    if (ph->layer == m->n_layer) { /* the head */
        ph->kind = PH_QKV, ph->mat = &m->head, ph->in = w->xn, ph->out = st->logits;
    } else {
        const Layer *L = &m->layers[ph->layer];
        switch (ph->kind) {
        case PH_QKV: ph->mat = &L->qkv, ph->in = w->xn, ph->out = w->qkv; break;
        case PH_ATTEND: ph->mat = NULL, ph->in = w->qkv, ph->out = w->att; break;
        case PH_ATTN_PROJ: ph->mat = &L->attn_proj, ph->in = w->att, ph->out = w->x, ph->mode = OUT_ADD; break;
        case PH_FC: ph->mat = &L->fc, ph->in = w->xn, ph->out = w->hid, ph->mode = OUT_ACT; break;
        default: ph->mat = &L->mlp_proj, ph->in = w->hid, ph->out = w->x, ph->mode = OUT_ADD; break;
        }
    }
    int n = ph->mat ? ph->mat->n_out : m->n_head;
    int chunks = ph->mat ? (n + MIN_CHUNK_ROWS - 1) / MIN_CHUNK_ROWS : n;
    if (ph->mat && chunks > st->threads * CHUNKS_PER_THREAD) chunks = st->threads * CHUNKS_PER_THREAD;
    chunks = chunks > MAX_CHUNKS ? MAX_CHUNKS : chunks;
    ph->rows = (n + chunks - 1) / chunks;
    /* No two chunks write one cache line; and whole groups of rows for Q8_BLOCKS and Q4_BLOCKS (16 rows is
     * both). */
    if (ph->mat) ph->rows = (int)whole_lines(ph->rows);
    ph->n_chunks = (n + ph->rows - 1) / ph->rows;
}

/* The serial part before phase k's chunks: the layer norm that makes its input, and the input's
 * rounding to bfloat16 where the product asks for it. Phase 0's layer norm follows the embedding. */
static void open_phase_serial(const Step *st, int k, const Phase *ph) {
    const Model *m = st->m;
    const Workspace *w = &st->w;
    if (ph->layer == m->n_layer)
        layer_norm(w->x, m->lnf_w, m->lnf_b, w->xn, m->n_embd, m->eps);
    else if (ph->kind == PH_QKV && k > 0)
        layer_norm(w->x, m->layers[ph->layer].ln1_w, m->layers[ph->layer].ln1_b, w->xn, m->n_embd, m->eps);
    else if (ph->kind == PH_FC)
        layer_norm(w->x, m->layers[ph->layer].ln2_w, m->layers[ph->layer].ln2_b, w->xn, m->n_embd, m->eps);
    if (ph->mat && ph->mat->round_bf16)
        for (int i = 0; i < ph->mat->n_in; i++) w->xin[i] = bf16_round(ph->in[i]);
    if (ph->mat && (ph->mat->kind == Q8_BLOCKS || ph->mat->kind == Q4_BLOCKS)) {
        QInput xq = w->xq;
        quantize_input(ph->in, ph->mat->n_in, &xq);
    }
}

/* Rows [r0, r1) of y = m(x) [+ bias] [then the activation] into acc[0 : r1-r0]; `xq` is x quantised
 * (quantize_input) where m is Q8_BLOCKS or Q4_BLOCKS. */
static void matvec_rows(const Mat *m, const float *x, const QInput *xq, int r0, int r1, int mode, int activation,
                        float *acc) {
    const int n = m->n_in;
    switch (m->kind) {
    case F32_COLS:
        cols_f32((const float *)m->w, n, m->n_out, x, r0, r1, acc);
        break;
    case F32_ROWS:
        for (int r = r0; r < r1; r++) acc[r - r0] = dot_f32((const float *)m->w + (size_t)r * n, x, n);
        break;
    case F16_ROWS:
        for (int r = r0; r < r1; r++) acc[r - r0] = dot_f16((const uint16_t *)m->w + (size_t)r * n, x, n);
        break;
    case BF16_ROWS:
        for (int r = r0; r < r1; r++) acc[r - r0] = dot_bf16((const uint16_t *)m->w + (size_t)r * n, x, n);
        break;
    case Q8_BLOCKS:
    case Q4_BLOCKS: { /* r0 is a multiple of GROUP (see describe_phase) */
        const int nb = (n + QBLOCK - 1) / QBLOCK;
        for (int r = r0; r < r1; r += GROUP) {
            float out[GROUP];
            const size_t g = r / GROUP;
            const uint16_t *scale = (const uint16_t *)m->scale + g * nb * GROUP;
            if (m->kind == Q8_BLOCKS)
                kernels->group_q8((const int8_t *)m->w + g * nb * GROUP * QBLOCK, scale, xq, nb, out);
            else
                kernels->group_q4((const uint8_t *)m->w + g * nb * GROUP * QBLOCK / 2, scale, xq, nb, out);
            memcpy(acc + (r - r0), out, sizeof(float) * (r1 - r < GROUP ? r1 - r : GROUP));
        }
        break;
    }
    }
    int width = r1 - r0;
    if (m->bias)
        for (int c = 0; c < width; c++) acc[c] += m->bias[r0 + c];
    if (mode == OUT_ACT) activate(acc, width, activation);
}

/* Computes chunk `i` of phase `ph` into this thread's scratch `acc` (and `s`). */
static void compute_chunk(const Step *st, const Phase *ph, int i, float *acc, float *s) {
    const Model *m = st->m;
    int r0 = i * ph->rows;
    if (ph->mat) {
        int r1 = r0 + ph->rows < ph->mat->n_out ? r0 + ph->rows : ph->mat->n_out;
        const float *x = ph->mat->round_bf16 ? st->w.xin : ph->in;
        matvec_rows(ph->mat, x, &st->w.xq, r0, r1, ph->mode, m->activation, acc);
        return;
    }
    const int C = m->n_embd, H = m->n_head, D = C / H;
    const float *qkv = ph->in;
    for (int h = r0; h < r0 + ph->rows && h < H; h++) {
        size_t at = ((size_t)ph->layer * H + h) * st->cache_len * D;
        attend(qkv + h * D, qkv + C + h * D, qkv + 2 * C + h * D, st->k_cache + at, st->v_cache + at, st->pos, D,
               m->layers[ph->layer].attn_scale, s, acc + (size_t)(h - r0) * D);
    }
}

/* Writes a computed chunk into the phase's output; run once per chunk, by the thread that won its commit. */
/* A chunk of the head's logits, already committed from the thread's scratch `acc` (which this overwrites):
 * its largest value, where that first is, and the sum of exp(logit - it). */
static void head_chunk_summary(const Workspace *w, int i, int r0, float *acc, int width) {
    float top = -INFINITY;
    int at = 0;
    for (int c = 0; c < width; c++)
        if (acc[c] > top) top = acc[c], at = c;
    w->head_max[i] = top, w->head_sum[i] = exp_in_place(acc, width, top), w->head_arg[i] = r0 + at;
}

static void commit_chunk(const Step *st, const Phase *ph, int i, float *acc) {
    int r0 = i * ph->rows;
    if (ph->mat) {
        int width = (r0 + ph->rows < ph->mat->n_out ? r0 + ph->rows : ph->mat->n_out) - r0;
        if (ph->mode == OUT_ADD)
            for (int c = 0; c < width; c++) ph->out[r0 + c] += acc[c];
        else
            memcpy(ph->out + r0, acc, sizeof(float) * width);
        if (ph->layer == st->m->n_layer) head_chunk_summary(&st->w, i, r0, acc, width);
        return;
    }
    const Model *m = st->m;
    const int C = m->n_embd, H = m->n_head, D = C / H;
    for (int h = r0; h < r0 + ph->rows && h < H; h++) {
        size_t at = (((size_t)ph->layer * H + h) * st->cache_len + st->pos) * D;
        memcpy(st->k_cache + at, ph->in + C + h * D, sizeof(float) * D);
        memcpy(st->v_cache + at, ph->in + 2 * C + h * D, sizeof(float) * D);
        memcpy(ph->out + h * D, acc + (size_t)(h - r0) * D, sizeof(float) * D);
    }
}

/* ---- the thread pool: the caller's thread and threads-1 helpers, kept between steps ---- */

enum { MAX_THREADS = 64 };
enum { CHUNK_FREE = 0, CHUNK_COMMITTING = 1, CHUNK_DONE = 2 }; /* the low 2 bits of a chunk's state */

/* How long to spin before sleeping or stealing, in nanoseconds. */
enum { IDLE_SPIN_NS = 100000, STEAL_AFTER_NS = 20000, YIELD_AFTER_NS = 200000 };

typedef struct {
    pthread_mutex_t lock;            // one step at a time
    int helpers;                     // helper threads started (thread ids 1..helpers)
    Step steps[2];                   // the step in progress and the one before: step seq is steps[seq & 1]
    _Atomic uint32_t step_seq;       // futex word: bumped when a step starts; helpers sleep on it
    _Atomic uint32_t step_done;      // = step_seq once the step's last phase is committed
    _Atomic uint64_t cursor;         // serial << 32 | the next chunk to claim
    _Atomic uint64_t done;           // serial << 32 | chunks committed
    _Atomic uint64_t state[MAX_CHUNKS]; // serial << 2 | CHUNK_*: each chunk of the current phase
    _Atomic uint32_t busy[2];        // futex words: helpers inside steps[i] (reading the caller's memory)
    _Atomic int sleepers;            // helpers asleep on step_seq
    _Atomic int caller_waiting;      // a caller sleeps on busy
    uint32_t next_serial;            // the first phase serial of the next step
} Pool;

static Pool pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t expected) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* Opens phase k of the step (or ends the step when k is past the last): its serial part, then its
 * chunks, published by one store of the cursor. Run by one thread: the caller for phase 0, else the
 * thread that committed phase k-1's last chunk. */
static void open_phase(Pool *p, const Step *st, int k) {
    if (k == st->n_phases) { /* the head's chunks summed up: the argmax and logsumexp of the logits */
        Phase head;
        describe_phase(st, k - 1, &head);
        float top = -INFINITY, sum = 0.0f;
        int32_t at = 0;
        for (int i = 0; i < head.n_chunks; i++)
            if (st->w.head_max[i] > top) top = st->w.head_max[i], at = st->w.head_arg[i];
        for (int i = 0; i < head.n_chunks; i++) sum += st->w.head_sum[i] * expf(st->w.head_max[i] - top);
        *st->argmax = at;
        *st->logsumexp = top + logf(sum);
        atomic_store(&p->step_done, st->seq);
        return;
    }
    Phase ph;
    describe_phase(st, k, &ph);
    open_phase_serial(st, k, &ph);
    uint32_t serial = st->first_serial + (uint32_t)k;
    for (int i = 0; i < ph.n_chunks; i++) atomic_store(&p->state[i], (uint64_t)serial << 2 | CHUNK_FREE);
    atomic_store(&p->done, (uint64_t)serial << 32);
    atomic_store(&p->cursor, (uint64_t)serial << 32);
}

/* Computes chunk i of phase k (serial `serial`) and commits it unless another thread already has.
 * Returns the nanoseconds the computation took. */
static long long run_chunk(Pool *p, const Step *st, int k, const Phase *ph, uint32_t serial, int i, int tid) {
    long long t0 = now_ns();
    float *acc = st->w.acc + st->w.thread_stride * tid, *s = st->w.s + st->w.thread_stride * tid;
    compute_chunk(st, ph, i, acc, s);
    long long took = now_ns() - t0;
    uint64_t free_state = (uint64_t)serial << 2 | CHUNK_FREE;
    if (!atomic_compare_exchange_strong(&p->state[i], &free_state, (uint64_t)serial << 2 | CHUNK_COMMITTING))
        return took; /* committed by another thread, or the phase is over: this computation is not needed */
    commit_chunk(st, ph, i, acc);
    atomic_store(&p->state[i], (uint64_t)serial << 2 | CHUNK_DONE);
    uint64_t done = atomic_fetch_add(&p->done, 1) + 1;
    if ((uint32_t)done == (uint32_t)ph->n_chunks) open_phase(p, st, k + 1);
    return took;
}

/* Takes part in the step `seq` until its last phase is committed. */
static void work(Pool *p, const Step *st, int tid) {
    const uint32_t seq = st->seq;
    Phase ph;
    int described = -1;
    long long chunk_ns = 0, waiting_since = 0;
    while ((int32_t)(atomic_load(&p->step_done) - seq) < 0) {
        uint64_t cursor = atomic_load(&p->cursor);
        uint32_t serial = (uint32_t)(cursor >> 32), next = (uint32_t)cursor;
        uint32_t k = serial - st->first_serial;
        if (k >= (uint32_t)st->n_phases) { /* the step's first phase is not open yet */
            _mm_pause();
            continue;
        }
        if ((int)k != described) describe_phase(st, (int)k, &ph), described = (int)k;
        if (next < (uint32_t)ph.n_chunks) {
            if (atomic_compare_exchange_strong(&p->cursor, &cursor, cursor + 1))
                chunk_ns = run_chunk(p, st, (int)k, &ph, serial, (int)next, tid);
            waiting_since = 0;
            continue;
        }
        /* Every chunk is claimed: wait for the phase to end, and take over a chunk whose thread is late. */
        _mm_pause();
        if (atomic_load(&p->done) == ((uint64_t)serial << 32 | (uint32_t)ph.n_chunks)) continue;
        long long now = now_ns();
        if (waiting_since == 0) waiting_since = now;
        if (now - waiting_since < STEAL_AFTER_NS + 2 * chunk_ns) continue;
        int stolen = 0;
        for (int i = 0; i < ph.n_chunks && !stolen; i++) {
            if (atomic_load(&p->state[i]) == ((uint64_t)serial << 2 | CHUNK_FREE)) {
                run_chunk(p, st, (int)k, &ph, serial, i, tid);
                stolen = 1;
            }
        }
        if (stolen) waiting_since = 0;
        else if (now - waiting_since > YIELD_AFTER_NS)
            sched_yield(); /* a commit or a serial part is late */
    }
}

static void *helper_main(void *arg) {
    const int tid = (int)(intptr_t)arg;
    Pool *p = &pool;
    uint32_t seen = atomic_load(&p->step_seq);
    for (;;) {
        /* Wait for the next step: spin a little (the next token's step follows soon), then sleep. */
        long long since = now_ns();
        uint32_t seq;
        while ((seq = atomic_load(&p->step_seq)) == seen) {
            if (now_ns() - since < IDLE_SPIN_NS) {
                for (int i = 0; i < 32; i++) _mm_pause();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            if (atomic_load(&p->step_seq) == seen) futex_wait(&p->step_seq, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        seen = seq;
        _Atomic uint32_t *busy = &p->busy[seq & 1];
        atomic_fetch_add(busy, 1);
        /* The step may have ended before this thread woke: then its memory may be gone, and its Step
         * rewritten by the step after next, so touch nothing. */
        const Step *st = &p->steps[seq & 1];
        if ((int32_t)(atomic_load(&p->step_done) - seq) < 0 && tid < st->threads) work(p, st, tid);
        if (atomic_fetch_sub(busy, 1) == 1 && atomic_load(&p->caller_waiting)) futex_wake(busy);
    }
    return NULL;
}

/* After fork() only the calling thread exists in the child: start helpers again when needed. */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pool.helpers = 0;
    atomic_store(&pool.busy[0], 0);
    atomic_store(&pool.busy[1], 0);
    atomic_store(&pool.sleepers, 0);
}

static void start_helpers(Pool *p, int threads) {
    static int registered = 0;
    if (!registered) {
        pthread_atfork(NULL, NULL, pool_after_fork);
        registered = 1;
    }
    while (p->helpers < threads - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        int rc = pthread_create(&thread, &attr, helper_main, (void *)(intptr_t)(p->helpers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* fewer helpers: the caller's thread does their chunks */
        p->helpers++;
    }
}

/* Waits until no helper is inside steps[slot] (one taken off its core in the middle of a chunk). */
static void wait_out(Pool *p, int slot) {
    long long since = now_ns();
    uint32_t busy;
    while ((busy = atomic_load(&p->busy[slot])) != 0) {
        if (now_ns() - since < STEAL_AFTER_NS) {
            _mm_pause();
            continue;
        }
        atomic_store(&p->caller_waiting, 1);
        if ((busy = atomic_load(&p->busy[slot])) != 0) futex_wait(&p->busy[slot], busy);
        atomic_store(&p->caller_waiting, 0);
    }
}

/* Logits for `token` at position `pos`, and their argmax and logsumexp (what greedy decoding and a token's
 * log-probability need, without another pass over the vocabulary); writes that position's keys and values
 * into the caches ([n_layer, 1, n_head, cache_len, head_dim], float32). `work` holds
 * gpt2_workspace_floats(m, threads, cache_len) floats. Returns 0, or -1 for arguments out of range.
 *
 * It returns once the logits are written, without waiting for a helper thread that the OS took off its
 * core in the middle of a chunk it no longer needs to finish: that thread may still read this step's
 * memory (the model, the caches, the workspace) for a while, and writes none of it. Call
 * gpt2_wait_idle before freeing or changing any of that memory other than through gpt2_step. */
int gpt2_step(const Model *m, int token, int pos, float *k_cache, float *v_cache, int cache_len, float *logits,
              int32_t *argmax, float *logsumexp, float *work_buffer, int threads) {
    if (token < 0 || token >= m->vocab || pos < 0 || pos >= cache_len || threads < 1) return -1;
    threads = threads > MAX_THREADS ? MAX_THREADS : threads;
    Pool *p = &pool;
    pthread_mutex_lock(&p->lock);
    start_helpers(p, threads);
    const uint32_t seq = atomic_load(&p->step_seq) + 1;
    wait_out(p, seq & 1); /* the step before the last one used this Step */
    Step *st = &p->steps[seq & 1];
    *st = (Step){.m = m, .token = token, .pos = pos, .cache_len = cache_len, .threads = threads,
                 .k_cache = k_cache, .v_cache = v_cache, .logits = logits, .argmax = argmax, .logsumexp = logsumexp,
                 .n_phases = PHASES_PER_LAYER * m->n_layer + 1, .first_serial = p->next_serial, .seq = seq};
    workspace_layout(m, threads, cache_len, work_buffer, &st->w);
    p->next_serial += (uint32_t)st->n_phases;
    embed(m, token, pos, st->w.x);
    layer_norm(st->w.x, m->layers[0].ln1_w, m->layers[0].ln1_b, st->w.xn, m->n_embd, m->eps);
    open_phase(p, st, 0);
    atomic_store(&p->step_seq, seq);
    if (threads > 1 && atomic_load(&p->sleepers) > 0) futex_wake(&p->step_seq);
    work(p, st, 0);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Returns once no helper thread reads the memory of an earlier gpt2_step: call it before freeing or
 * reusing a cache, a workspace or a model that a step has read. */
void gpt2_wait_idle(void) {
    Pool *p = &pool;
    pthread_mutex_lock(&p->lock);
    wait_out(p, 0);
    wait_out(p, 1);
    pthread_mutex_unlock(&p->lock);
}

/* Chooses the kernel set: "auto" (the best this CPU runs) or a name of KERNEL_SETS. Returns 0, or -1
 * for a name it does not know or a set this CPU cannot run (the set in use stays). */
int gpt2_use_kernels(const char *name) {
    const KernelSet *chosen = NULL;
    for (int i = 0; i < N_KERNEL_SETS && !chosen; i++)
        if (KERNEL_SETS[i].supported() && (!strcmp(name, "auto") || !strcmp(name, KERNEL_SETS[i].name)))
            chosen = &KERNEL_SETS[i];
    if (!chosen) return -1;
    pthread_mutex_lock(&pool.lock);
    kernels = chosen;
    pthread_mutex_unlock(&pool.lock);
    return 0;
}

/* The name of the kernel set in use. */
const char *gpt2_kernels(void) { return kernels->name; }

/* The names of the kernel sets this CPU can run, best first, separated by spaces, into out (size n). */
void gpt2_kernel_sets(char *out, int n) {
    out[0] = 0;
    for (int i = 0; i < N_KERNEL_SETS; i++) {
        if (!KERNEL_SETS[i].supported()) continue;
        if (out[0]) strncat(out, " ", n - strlen(out) - 1);
        strncat(out, KERNEL_SETS[i].name, n - strlen(out) - 1);
    }
}

/* A Q8_BLOCKS or Q4_BLOCKS matrix's weights as float32 rows [n_out, n_in] into out (each weight times its
 * block's scale, as engine/core/forms.py's dequantize_int8 and dequantize_int4 give them): a batch of
 * inputs (a prompt) is multiplied by PyTorch from these. Returns 0, or -1 for another kind. */
int gpt2_dequantize(const Mat *m, float *out) {
    if (m->kind != Q8_BLOCKS && m->kind != Q4_BLOCKS) return -1;
    const int n = m->n_in, nb = (n + QBLOCK - 1) / QBLOCK, groups = (m->n_out + GROUP - 1) / GROUP;
    const uint16_t *scale = (const uint16_t *)m->scale;
    for (int g = 0; g < groups; g++)
        for (int b = 0; b < nb; b++) {
            const size_t block = (size_t)g * nb + b;
            const int width = n - b * QBLOCK < QBLOCK ? n - b * QBLOCK : QBLOCK;
            for (int j = 0; j < GROUP && g * GROUP + j < m->n_out; j++) {
                const float s = _cvtsh_ss(scale[block * GROUP + j]);
                float *o = out + (size_t)(g * GROUP + j) * n + b * QBLOCK;
                if (m->kind == Q8_BLOCKS) {
                    const int8_t *w = (const int8_t *)m->w + block * GROUP * QBLOCK + j * 4;
                    for (int k = 0; k < width; k++) o[k] = (float)w[(k / 4) * 32 + k % 4] * s;
                } else {
                    const uint8_t *w = (const uint8_t *)m->w + block * GROUP * QBLOCK / 2 + j * 4;
                    for (int k = 0; k < width; k++) {
                        const uint8_t byte = w[((k % 16) / 4) * 32 + k % 4];
                        o[k] = (float)((k < 16 ? byte & 15 : byte >> 4) - 8) * s;
                    }
                }
            }
        }
    return 0;
}

/* y = m(x) [+ bias] for one input row x (n_in floats) into y (n_out floats), on the calling thread: a
 * Q8_BLOCKS or Q4_BLOCKS matrix only (PyTorch's path for one row, e.g. the head at the end of a prompt).
 * Returns 0, -1 for another kind, -2 for an input wider than it handles. */
int gpt2_matvec(const Mat *m, const float *x, float *y) {
    enum { MAX_IN = 16384 };
    if (m->kind != Q8_BLOCKS && m->kind != Q4_BLOCKS) return -1;
    if (m->n_in > MAX_IN) return -2;
    int8_t q[MAX_IN + QBLOCK];
    uint8_t a[MAX_IN + QBLOCK];
    float d[MAX_IN / QBLOCK + 1];
    int32_t sum[MAX_IN / QBLOCK + 1];
    QInput in = {q, a, d, sum};
    quantize_input(x, m->n_in, &in);
    matvec_rows(m, x, &in, 0, m->n_out, OUT_STORE, ACT_RELU, y); /* no activation with OUT_STORE */
    return 0;
}

/* The version of this interface; native.py refuses a library whose version is not its ABI_VERSION. */
int gpt2_abi_version(void) { return GPT2_ABI_VERSION; }

/* For Mat, Layer and Model in turn: the struct's size, then the offset and size of each field in
 * declaration order. native.py computes the same list from its ctypes mirrors and compares. */
#define FIELD(S, f) ((int64_t)offsetof(S, f)), ((int64_t)sizeof(((S *)0)->f))
static const int64_t STRUCT_LAYOUT[] = {
    sizeof(Mat), FIELD(Mat, kind), FIELD(Mat, n_in), FIELD(Mat, n_out), FIELD(Mat, round_bf16), FIELD(Mat, w),
    FIELD(Mat, scale), FIELD(Mat, bias),
    sizeof(Layer), FIELD(Layer, ln1_w), FIELD(Layer, ln1_b), FIELD(Layer, ln2_w), FIELD(Layer, ln2_b),
    FIELD(Layer, qkv), FIELD(Layer, attn_proj), FIELD(Layer, fc), FIELD(Layer, mlp_proj), FIELD(Layer, attn_scale),
    sizeof(Model), FIELD(Model, n_layer), FIELD(Model, n_head), FIELD(Model, n_embd), FIELD(Model, n_inner),
    FIELD(Model, vocab), FIELD(Model, activation), FIELD(Model, eps), FIELD(Model, wte), FIELD(Model, wpe),
    FIELD(Model, lnf_w), FIELD(Model, lnf_b), FIELD(Model, head), FIELD(Model, layers),
};
#undef FIELD

/* Copies the first n values of STRUCT_LAYOUT into out (NULL is fine for n = 0); returns how many there are. */
int gpt2_struct_layout(int64_t *out, int n) {
    const int count = (int)(sizeof STRUCT_LAYOUT / sizeof STRUCT_LAYOUT[0]);
    for (int i = 0; i < n && i < count; i++) out[i] = STRUCT_LAYOUT[i];
    return count;
}
