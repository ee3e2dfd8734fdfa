/* One GPT-2 decoding step on the CPU, for batch 1: token in, logits out, the KV cache updated.
 *
 * Decoding reads every weight once per token, so its speed is how fast the weights stream from
 * memory. PyTorch pays for that step in ~250 small operator calls and a thread fork/join for each
 * product; here the whole step is one OpenMP parallel region (the OpenMP runtime PyTorch itself
 * loaded, so the two share one thread pool), separated by barriers, and every matrix is multiplied
 * by a kernel written for its storage:
 *
 *   F32_COLS  float32 [n_in, n_out] (GPT-2's Conv1D layout; the float32 head is stored this way too)
 *   F32_ROWS  float32 [n_out, n_in]
 *   F16_ROWS  float16 [n_out, n_in]
 *   BF16_ROWS bfloat16 [n_out, n_in]
 *   I8_ROWS   int8 [n_out, n_in] with one float32 scale per output row
 *
 * A matrix may ask for its input rounded to bfloat16 first (int8 and bfloat16 modes do, so that
 * decoding computes what their batched PyTorch path computes). Accumulation is float32 throughout.
 *
 * The contract with engine/core/native.py, which loads this file's library through ctypes:
 *   - Mat, Layer and Model below are mirrored there as ctypes structures. gpt2_struct_layout reports
 *     their sizes and their fields' offsets and sizes; native.py refuses the library if they disagree.
 *   - gpt2_abi_version returns GPT2_ABI_VERSION, which native.py's ABI_VERSION must equal: bump both
 *     whenever an exported function's signature or meaning changes.
 *   - gpt2_workspace_floats says how many floats of scratch memory gpt2_step needs for a thread
 *     count and a cache length; the caller allocates them (64-byte aligned is best, see take())
 *     and passes them to every gpt2_step with that thread count and cache length.
 *   - Nothing here allocates memory or keeps state between calls. The weights are read in place.
 *   - Built with AVX2, FMA and F16C (no AVX-512); native.py checks the CPU before calling anything.
 */

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GPT2_ABI_VERSION 2

enum { F32_COLS = 0, F32_ROWS = 1, F16_ROWS = 2, BF16_ROWS = 3, I8_ROWS = 4 };
enum { ACT_GELU_TANH = 0, ACT_GELU_ERF = 1, ACT_RELU = 2 };
enum { OUT_STORE = 0, OUT_ADD = 1, OUT_ACT = 2 };
enum { LINE_FLOATS = 16 }; /* floats in a 64-byte cache line */

/* n floats rounded up to whole cache lines. */
static inline long long whole_lines(long long n) { return (n + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS; }

/* The shapes below: C = n_embd, H = n_head, D = C / H (head_dim), V = vocab, L = n_layer. */

/* One matrix product y = x W (+ bias), x of n_in floats, y of n_out. */
typedef struct {
    int32_t kind;       // how w is stored: F32_COLS, F32_ROWS, F16_ROWS, BF16_ROWS or I8_ROWS
    int32_t n_in;       // input width
    int32_t n_out;      // output width
    int32_t round_bf16; // 1: round the input to bfloat16 before multiplying, else 0
    const void *w;      // (n_out, n_in) rows, or (n_in, n_out) for F32_COLS
    const float *scale; // (n_out,) for I8_ROWS: one per output row; else NULL
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
#define LOAD_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define SCALAR_I8(v) ((float)(v))

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
DEFINE_DOT(dot_i8, int8_t, LOAD_I8, SCALAR_I8)

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

/* y = m(x) [+ bias], combined into out by `mode`, for this thread's share of the outputs.
 * `xr` and `acc` are this thread's scratch (n_in and n_out floats). Callers put a barrier after. */
static void matvec(const Mat *m, const float *x, float *out, int mode, int activation, float *xr, float *acc,
                   int t, int nt) {
    /* Whole cache lines of outputs per thread, so that no two threads write one line of `out`. */
    int per = (int)whole_lines((m->n_out + nt - 1) / nt);
    int c0 = t * per, c1 = c0 + per < m->n_out ? c0 + per : m->n_out;
    if (c0 >= c1) return;
    if (m->round_bf16) {
        for (int i = 0; i < m->n_in; i++) xr[i] = bf16_round(x[i]);
        x = xr;
    }
    const int n = m->n_in;
    switch (m->kind) {
    case F32_COLS:
        cols_f32((const float *)m->w, n, m->n_out, x, c0, c1, acc);
        break;
    case F32_ROWS:
        for (int r = c0; r < c1; r++) acc[r - c0] = dot_f32((const float *)m->w + (size_t)r * n, x, n);
        break;
    case F16_ROWS:
        for (int r = c0; r < c1; r++) acc[r - c0] = dot_f16((const uint16_t *)m->w + (size_t)r * n, x, n);
        break;
    case BF16_ROWS:
        for (int r = c0; r < c1; r++) acc[r - c0] = dot_bf16((const uint16_t *)m->w + (size_t)r * n, x, n);
        break;
    case I8_ROWS:
        for (int r = c0; r < c1; r++) acc[r - c0] = dot_i8((const int8_t *)m->w + (size_t)r * n, x, n) * m->scale[r];
        break;
    }
    int width = c1 - c0;
    if (m->bias)
        for (int c = 0; c < width; c++) acc[c] += m->bias[c0 + c];
    if (mode == OUT_ADD) {
        for (int c = 0; c < width; c++) out[c0 + c] += acc[c];
    } else {
        memcpy(out + c0, acc, sizeof(float) * width);
        if (mode == OUT_ACT) activate(out + c0, width, activation);
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
        default: v = (float)((const int8_t *)e->w)[(size_t)token * n + i] * e->scale[token]; break;
        }
        x[i] = v + wpe[i];
    }
}

/* One head's attention for the new token at `pos`: its key and value go into the cache, then it
 * attends to positions 0..pos. K and V are that head's [cache_len, d] slices; `s` is scratch. */
static void attend(const float *q, const float *k_new, const float *v_new, float *K, float *V, int pos, int d,
                   float scale, float *s, float *out) {
    memcpy(K + (size_t)pos * d, k_new, sizeof(float) * d);
    memcpy(V + (size_t)pos * d, v_new, sizeof(float) * d);
    int n = pos + 1;
    float top = -INFINITY;
    for (int t = 0; t < n; t++) {
        s[t] = dot_f32(K + (size_t)t * d, q, d) * scale;
        top = s[t] > top ? s[t] : top;
    }
    __m256 sum8 = _mm256_setzero_ps(), top8 = _mm256_set1_ps(top);
    int t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + t), top8));
        _mm256_storeu_ps(s + t, e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    float sum = hsum(sum8);
    for (; t < n; t++) {
        s[t] = expf(s[t] - top);
        sum += s[t];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < d; j++) out[j] = 0.0f;
    for (t = 0; t < n; t++) {
        const float *v = V + (size_t)t * d;
        float p = s[t] * inv;
        int j = 0;
        __m256 p8 = _mm256_set1_ps(p);
        for (; j + 8 <= d; j += 8)
            _mm256_storeu_ps(out + j, _mm256_fmadd_ps(p8, _mm256_loadu_ps(v + j), _mm256_loadu_ps(out + j)));
        for (; j < d; j++) out[j] += p * v[j];
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
    /* Each thread's own scratch. These are thread 0's; thread t's are these plus t * thread_stride. */
    float *xr;               // (max_in,) a product's input rounded to bfloat16
    float *acc;              // (max_out,) a product's outputs, this thread's share of them
    float *s;                // (cache_len,) one head's attention weights
    long long thread_stride; // floats from one thread's scratch to the next
} Workspace;

/* Hands out the next n floats of the buffer at `base`, or NULL where base is NULL (sizing only).
 * Every array takes whole cache lines, so each starts on a line of its own in a 64-byte-aligned
 * buffer (as torch's CPU allocator gives): threads writing neighbouring arrays, or their shares of
 * one array (see matvec), never write the same line. An unaligned buffer is still correct. */
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
    const long long shared = used;
    w->xr = take(base, &used, max_in(m));
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

/* Logits for `token` at position `pos`; writes that position's keys and values into the caches
 * ([n_layer, 1, n_head, cache_len, head_dim], float32). `work` holds gpt2_workspace_floats(m, threads,
 * cache_len) floats. Returns 0, or -1 for arguments out of range. */
int gpt2_step(const Model *m, int token, int pos, float *k_cache, float *v_cache, int cache_len, float *logits,
              float *work, int threads) {
    if (token < 0 || token >= m->vocab || pos < 0 || pos >= cache_len || threads < 1) return -1;
    const int C = m->n_embd, H = m->n_head, D = C / H;
    Workspace w;
    workspace_layout(m, threads, cache_len, work, &w);
    float *x = w.x, *xn = w.xn, *att = w.att, *qkv = w.qkv, *hid = w.hid;

#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const long long own = w.thread_stride * t;
        float *xr = w.xr + own, *acc = w.acc + own, *s = w.s + own;
#pragma omp single
        {
            embed(m, token, pos, x);
            layer_norm(x, m->layers[0].ln1_w, m->layers[0].ln1_b, xn, C, m->eps);
        }
        for (int l = 0; l < m->n_layer; l++) {
            const Layer *L = &m->layers[l];
            matvec(&L->qkv, xn, qkv, OUT_STORE, 0, xr, acc, t, nt);
#pragma omp barrier
            for (int h = t; h < H; h += nt) {
                size_t at = ((size_t)l * H + h) * cache_len * D;
                attend(qkv + h * D, qkv + C + h * D, qkv + 2 * C + h * D, k_cache + at, v_cache + at, pos, D,
                       L->attn_scale, s, att + h * D);
            }
#pragma omp barrier
            matvec(&L->attn_proj, att, x, OUT_ADD, 0, xr, acc, t, nt);
#pragma omp barrier
#pragma omp single
            layer_norm(x, L->ln2_w, L->ln2_b, xn, C, m->eps);
            matvec(&L->fc, xn, hid, OUT_ACT, m->activation, xr, acc, t, nt);
#pragma omp barrier
            matvec(&L->mlp_proj, hid, x, OUT_ADD, 0, xr, acc, t, nt);
#pragma omp barrier
#pragma omp single
            {
                if (l + 1 < m->n_layer)
                    layer_norm(x, m->layers[l + 1].ln1_w, m->layers[l + 1].ln1_b, xn, C, m->eps);
                else
                    layer_norm(x, m->lnf_w, m->lnf_b, xn, C, m->eps);
            }
        }
        matvec(&m->head, xn, logits, OUT_STORE, 0, xr, acc, t, nt);
    }
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
