// Packed 4/8-bit matmuls with int8 dot products (AVX512-VNNI vpdpbusd): y = x W.T (+ bias) for any row count.
//
// Activations: each 32-column block of a row becomes three int8 levels, x ≈ s (a1 + a2 / 254 + a3 / 254^2) with
// s = max|x| / 127: a1 rounds x / s, each next level rounds the rest of the previous one (at most 1/2) times
// 254, so an element is at most max|x| 6e-8 off: fp32-like sums even in a block with an outlier channel
// (two levels, max|x| 1.6e-5, were measured to turn SmolLM2's greedy answers in bf16). Σ x per block stays fp32.
// Weights: one vpdpbusd multiplies 4 columns of all 16 rows of a tile (one 32-bit lane per row) by 4
// activation bytes broadcast, so a block is 8 dot products per level and row, with exact int32 sums.
//   Q4: lane = nibble bytes (u8) of columns (2c, 2c+1, 16+2c, 17+2c), straight from a packed 32-byte chunk c,
//       times the activations (s8) in that column order; y += d s Σ_l 254^-l Σ q a_l + m Σ x.
//   Q8: lane = int8 weights of columns 4g..4g+3 (two packed chunks interleaved by vpermw) + 128 as u8, times
//       the activations in natural order; 128 Σ a_l, kept per row, block and level, takes the 128 back out.
// Rows go through a tile a group at a time, sharing each unpacked operand; threads split the tiles.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "cpu_features.h"
#include "quant_packed.h"

namespace sgnb_quant {

bool can_use_vnni() { return sgnb::active_isa() >= sgnb::Isa::kAvx512Vnni; }

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")
namespace {

constexpr int kLevels = 3;
constexpr int64_t kPrefetchBlocks = 8;   // 4% faster at one row than the hardware prefetcher alone
constexpr float kLevelScale = 254.0f;     // a_{l+1} = round((rest of a_l) * 254)

// Quantized activation rows, block-major so that a group of rows sits at constant offsets. Per block and row:
// 3 * 32 bytes (a1's 32, a2's 32, a3's 32, in the weight type's column order) at bytes[b, row];
// scale[b, row] = s / 254^2; xsum[b, row] = Σ x (exact fp32); Q8 only: offset[b, row, l] = 128 Σ a_l.
struct ActQ8 {
  const uint8_t* bytes;       // [num_blocks, num_rows, 3, 32]
  const float* scale;         // [num_blocks, num_rows]
  const float* xsum;          // [num_blocks, num_rows]
  const int32_t* offset;      // [num_blocks, num_rows, 3]
  int64_t num_rows;
};

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const at::BFloat16* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}

// One row x [K]: its blocks into the ActQ8 buffers at row `row` of `num_rows`.
template <class T>
void quantize_row(const T* x, int64_t nb, bool is_q8, int64_t row, int64_t num_rows, uint8_t* bytes,
                  float* scale, float* xsum, int32_t* offset) {
  // Q4's column order: bytes 4c..4c+3 = columns 2c, 2c+1, 16+2c, 17+2c (indices >= 16 take the second half)
  const __m512i lo_order = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const __m512i hi_order = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  const __m512 vlevel = _mm512_set1_ps(kLevelScale);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t at = b * num_rows + row;
    __m512 v[2] = {load16(x + b * kBlock), load16(x + b * kBlock + 16)};
    xsum[at] = _mm512_reduce_add_ps(_mm512_add_ps(v[0], v[1]));
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
    // a block of (near) zeros quantizes to zeros; a NaN (which max can drop) or inf gives a non-finite scale,
    // so y is non-finite too
    const bool has_nan =
        (_mm512_cmp_ps_mask(v[0], v[0], _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v[1], v[1], _CMP_UNORD_Q)) != 0;
    const bool is_zero = !has_nan && !(amax >= 1e-30f);
    scale[at] = has_nan ? std::numeric_limits<float>::quiet_NaN()
                        : is_zero ? 0.0f : amax / (127.0f * kLevelScale * kLevelScale);
    const __m512 inv = _mm512_set1_ps(is_zero ? 0.0f : 127.0f / amax);
    v[0] = _mm512_mul_ps(v[0], inv);
    v[1] = _mm512_mul_ps(v[1], inv);
    for (int l = 0; l < kLevels; ++l) {
      __m512i q[2];
      for (int h = 0; h < 2; ++h) {
        if (l > 0) v[h] = _mm512_mul_ps(v[h], vlevel);
        q[h] = _mm512_cvtps_epi32(v[h]);                                  // round to nearest even
        v[h] = _mm512_sub_ps(v[h], _mm512_cvtepi32_ps(q[h]));            // the rest, |.| <= 1/2
      }
      if (is_q8) offset[at * kLevels + l] = 128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
      __m512i first = q[0], second = q[1];
      if (!is_q8) {
        first = _mm512_permutex2var_epi32(q[0], lo_order, q[1]);
        second = _mm512_permutex2var_epi32(q[0], hi_order, q[1]);
      }
      uint8_t* dst = bytes + (at * kLevels + l) * kBlock;
      _mm_storeu_si128((__m128i*)dst, _mm512_cvtsepi32_epi8(first));
      _mm_storeu_si128((__m128i*)(dst + 16), _mm512_cvtsepi32_epi8(second));
    }
  }
}

// acc += Σ4 u8(a) * s8(b) with b's 4 bytes read from memory and broadcast (embedded in the instruction: GCC
// does not fold _mm512_set1_epi32 into vpdpbusd itself).
inline __m512i dot_bcast_s8(__m512i acc, __m512i a, const int32_t* b) {
  asm("vpdpbusd %[b]%{1to16%}, %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [b] "m"(*b));
  return acc;
}

// Operand g (0..7) of a tile's block for the dot products: lane i = 4 weight bytes (u8) of row i.
template <bool kQ8>
inline __m512i unpack(const uint8_t* q, int g) {
  if (kQ8) {   // words i and 16 + i of chunks 2g, 2g + 1: columns 4g..4g+3
    const __m512i pairs = _mm512_setr_epi32(0x100000, 0x110001, 0x120002, 0x130003, 0x140004, 0x150005,
                                            0x160006, 0x170007, 0x180008, 0x190009, 0x1A000A, 0x1B000B,
                                            0x1C000C, 0x1D000D, 0x1E000E, 0x1F000F);
    return _mm512_xor_si512(_mm512_permutexvar_epi16(pairs, _mm512_loadu_si512(q + g * 64)),
                            _mm512_set1_epi8(static_cast<char>(0x80)));     // + 128: u8
  }
  // a row's two bytes of chunk g as a word d: (d | d << 12) & 0x0F0F0F0F = its four nibbles as bytes
  const __m512i d = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(q + g * 32)));
  return _mm512_and_si512(_mm512_or_si512(d, _mm512_slli_epi32(d, 12)), _mm512_set1_epi32(0x0F0F0F0F));
}

// Rows per group: the int32 sums (R rows x 3 levels) and R fp32 accumulators share the 32 vector registers.
constexpr int kGroupRows = 6;

// R activation rows (from row0) against tile t: y[r, tile rows] (ldy apart), `valid` of the 16 lanes.
template <int R, bool kQ8>
void tile_rows(const PackedView& w, int64_t t, const ActQ8& a, int64_t row0, float* y, int64_t ldy,
               const float* bias, int valid) {
  constexpr int L = kLevels;
  // fewer rows: more independent dot-product chains per level to cover vpdpbusd's latency
  constexpr int C = R == 1 ? 4 : R == 2 ? 2 : 1;
  const int64_t nb = w.num_blocks;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t at = (t * nb + b) * kTile, arow = b * a.num_rows + row0;
    const uint8_t* q = w.qs + (t * nb + b) * w.quant_bytes;
    // a few blocks ahead (into the next tile at a tile's end; past the last one too: prefetches never fault):
    // the weights stream from memory once per call
    for (int64_t p = 0; p < w.quant_bytes; p += 64)
      _mm_prefetch(reinterpret_cast<const char*>(q + kPrefetchBlocks * w.quant_bytes + p), _MM_HINT_T0);
    if (b % 2 == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(w.scales + at + kPrefetchBlocks * kTile), _MM_HINT_T0);
      if (w.mins) _mm_prefetch(reinterpret_cast<const char*>(w.mins + at + kPrefetchBlocks * kTile), _MM_HINT_T0);
    }
    const int32_t* act = reinterpret_cast<const int32_t*>(a.bytes + arow * L * kBlock);   // [R, L, 8] words
    __m512i s[R][L][C];
    for (int r = 0; r < R; ++r)
      for (int l = 0; l < L; ++l)
        for (int j = 0; j < C; ++j) s[r][l][j] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m512i lane = unpack<kQ8>(q, g);
      for (int r = 0; r < R; ++r)
        for (int l = 0; l < L; ++l) s[r][l][g % C] = dot_bcast_s8(s[r][l][g % C], lane, act + (r * L + l) * 8 + g);
    }
    const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(w.scales + at)));
    __m512 mv = _mm512_setzero_ps();
    if (w.qtype == QType::kQ4_1) mv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(w.mins + at)));
    if (w.qtype == QType::kQ4_0) mv = _mm512_mul_ps(dv, _mm512_set1_ps(-8.0f));   // w = d q - 8 d
    for (int r = 0; r < R; ++r) {
      // Σ_l 254^(L-1-l) Σ q a_l: each level's int32 sum is exact (Q8: less its 128 Σ a_l), as is its fp32 form
      __m512 sum = _mm512_setzero_ps();
      for (int l = 0; l < L; ++l) {
        __m512i level = s[r][l][0];
        for (int j = 1; j < C; ++j) level = _mm512_add_epi32(level, s[r][l][j]);
        if (kQ8) level = _mm512_sub_epi32(level, _mm512_set1_epi32(a.offset[(arow + r) * L + l]));
        sum = l == 0 ? _mm512_cvtepi32_ps(level)
                     : _mm512_fmadd_ps(sum, _mm512_set1_ps(kLevelScale), _mm512_cvtepi32_ps(level));
      }
      acc[r] = _mm512_fmadd_ps(sum, _mm512_mul_ps(dv, _mm512_set1_ps(a.scale[arow + r])), acc[r]);
      if (!kQ8) acc[r] = _mm512_fmadd_ps(mv, _mm512_set1_ps(a.xsum[arow + r]), acc[r]);
    }
  }
  alignas(64) float out[kTile];
  for (int r = 0; r < R; ++r) {
    _mm512_store_ps(out, acc[r]);
    float* yr = y + r * ldy;
    for (int i = 0; i < valid; ++i) yr[i] = out[i] + (bias ? bias[i] : 0.0f);
  }
}

template <bool kQ8>
void tiles(const PackedView& w, const ActQ8& a, int64_t num_rows, float* y, int64_t out_features,
           const float* bias, int64_t tile_begin, int64_t tile_end) {
  constexpr int G = kGroupRows;
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    const int64_t n0 = t * kTile;
    const int valid = static_cast<int>(std::min<int64_t>(kTile, out_features - n0));
    const float* b = bias ? bias + n0 : nullptr;
    int64_t r = 0;
    for (; r + G <= num_rows; r += G)
      tile_rows<G, kQ8>(w, t, a, r, y + r * out_features + n0, out_features, b, valid);
    float* yr = y + r * out_features + n0;
    switch (num_rows - r) {      // the rest: fewer than G rows
      case 5: tile_rows<5, kQ8>(w, t, a, r, yr, out_features, b, valid); break;
      case 4: tile_rows<4, kQ8>(w, t, a, r, yr, out_features, b, valid); break;
      case 3: tile_rows<3, kQ8>(w, t, a, r, yr, out_features, b, valid); break;
      case 2: tile_rows<2, kQ8>(w, t, a, r, yr, out_features, b, valid); break;
      case 1: tile_rows<1, kQ8>(w, t, a, r, yr, out_features, b, valid); break;
      default: break;
    }
  }
}

// The entry points the (untargeted) driver below calls.
void quantize_rows(const void* x, bool is_bf16, bool is_q8, int64_t num_rows, int64_t nb, int64_t begin,
                   int64_t end, uint8_t* bytes, float* scale, float* xsum, int32_t* offset) {
  const int64_t K = nb * kBlock;
  for (int64_t r = begin; r < end; ++r) {
    if (is_bf16)
      quantize_row(static_cast<const at::BFloat16*>(x) + r * K, nb, is_q8, r, num_rows, bytes, scale, xsum, offset);
    else
      quantize_row(static_cast<const float*>(x) + r * K, nb, is_q8, r, num_rows, bytes, scale, xsum, offset);
  }
}

void tile_range(const PackedView& w, const ActQ8& a, int64_t num_rows, float* y, int64_t out_features,
                const float* bias, int64_t tile_begin, int64_t tile_end) {
  if (w.qtype == QType::kQ8_0) tiles<true>(w, a, num_rows, y, out_features, bias, tile_begin, tile_end);
  else tiles<false>(w, a, num_rows, y, out_features, bias, tile_begin, tile_end);
}

}  // namespace
#pragma GCC pop_options

// Outside the target region: library code instantiated here (std::vector, at::parallel_for) stays baseline.
void ActQ8Buffers::resize(int64_t rows, int64_t num_blocks) {
  num_rows = rows;
  bytes.resize(rows * num_blocks * kLevels * kBlock);
  scale.resize(rows * num_blocks);
  xsum.resize(rows * num_blocks);
  offset.resize(rows * num_blocks * kLevels);
}

void vnni_quantize(const void* x, bool is_bf16, bool is_q8, int64_t num_blocks, int64_t begin, int64_t end,
                   ActQ8Buffers& a) {
  quantize_rows(x, is_bf16, is_q8, a.num_rows, num_blocks, begin, end, a.bytes.data(), a.scale.data(),
                a.xsum.data(), a.offset.data());
}

void vnni_tiles(const PackedView& w, const ActQ8Buffers& a, float* y, int64_t out_features, const float* bias,
                int64_t tile_begin, int64_t tile_end) {
  const ActQ8 view{a.bytes.data(), a.scale.data(), a.xsum.data(), a.offset.data(), a.num_rows};
  tile_range(w, view, a.num_rows, y, out_features, bias, tile_begin, tile_end);
}

void vnni_linear(const PackedView& w, const void* x, bool is_bf16, int64_t num_rows, float* y,
                 int64_t out_features, const float* bias) {
  ActQ8Buffers a;
  a.resize(num_rows, w.num_blocks);
  const bool is_q8 = w.qtype == QType::kQ8_0;
  auto quantize = [&](int64_t begin, int64_t end) { vnni_quantize(x, is_bf16, is_q8, w.num_blocks, begin, end, a); };
  if (num_rows >= 64) at::parallel_for(0, num_rows, 16, quantize);
  else quantize(0, num_rows);
  at::parallel_for(0, w.num_tiles, 1, [&](int64_t begin, int64_t end) {
    vnni_tiles(w, a, y, out_features, bias, begin, end);
  });
}

}  // namespace sgnb_quant
