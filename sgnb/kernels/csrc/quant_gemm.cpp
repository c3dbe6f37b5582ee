// Packed 4/8-bit matmuls: y = x @ W.T (+ bias) with W a PackedWeight (sgnb/kernels/quant_weights.py), and
// stream_bytes, the weight-streaming bound the benchmarks compare against.
//
// avx512_vnni CPUs: the int8 dot products of quant_vnni.cpp, for every row count with fp32 activations and for
// 1..kMaxGemvRows bf16 ones. Otherwise, 1..kMaxGemvRows activation rows: the packed weights stream once per
// call; each 16-row tile of W is decoded in registers (vector bodies: quant_gemm_simd.h, one copy per ISA:
// avx512, avx2) while the activation rows pass over it, accumulating Σ q x per 32-block in fp32 FMAs and
// applying the block's scale then: y += d Σ q x + m Σ x; scalar loops elsewhere. More rows (prefill): slabs of
// output rows are dequantized (gguf's exact values, in x's dtype) into a buffer and multiplied by at::mm.
// Threads: at::parallel_for over output tiles.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu_features.h"
#include "kernel_ops.h"
#include "quant_packed.h"

namespace sgnb_quant {

constexpr int64_t kMaxGemvRows = 64;
// independent accumulator chains per activation row in a block's dot products: fewer rows need more of
// them to hide the FMA latency; four rows at a time fill the registers with four each
constexpr int chains(int rows) { return rows <= 2 ? 8 : 4; }
constexpr int64_t kSlabTiles = 256;  // prefill: output rows dequantized per at::mm (4096 rows)

// ---- scalar: plain loops over the same layout (also the reference for the vector paths' tests) ----
namespace scalar {

inline float quant(const PackedView& w, const uint8_t* q, int row, int k) {
  if (w.qtype == QType::kQ8_0) return static_cast<float>(static_cast<int8_t>(q[(k / 2) * 32 + row * 2 + k % 2]));
  uint8_t byte = q[((k % 16) / 2) * 32 + row * 2 + k % 2];
  return static_cast<float>(k < 16 ? byte & 0x0F : byte >> 4);
}

inline float offset(const PackedView& w, int64_t at, float d) {   // m of w = d q + m
  if (w.qtype == QType::kQ4_1) return static_cast<float>(w.mins[at]);
  return w.qtype == QType::kQ4_0 ? -8.0f * d : 0.0f;
}

void gemv_tiles(const PackedView& w, const float* x, const float* xsum, int64_t num_rows, float* y,
                int64_t out_features, const float* bias, int64_t tile_begin, int64_t tile_end) {
  const int64_t nb = w.num_blocks, K = nb * kBlock;
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    for (int row = 0; row < kTile && t * kTile + row < out_features; ++row) {
      for (int64_t r = 0; r < num_rows; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* q = w.qs + (t * nb + b) * w.quant_bytes;
          float s = 0.0f;
          for (int k = 0; k < kBlock; ++k) s += quant(w, q, row, k) * x[r * K + b * kBlock + k];
          const int64_t at = (t * nb + b) * kTile + row;
          const float d = static_cast<float>(w.scales[at]);
          acc += d * s + offset(w, at, d) * xsum[r * nb + b];
        }
        const int64_t n = t * kTile + row;
        y[r * out_features + n] = acc + (bias ? bias[n] : 0.0f);
      }
    }
  }
}

template <class Out>
void dequant_tiles(const PackedView& w, int64_t tile_begin, int64_t tile_end, Out* wt, int64_t ldw) {
  const int64_t nb = w.num_blocks;
  for (int64_t t = tile_begin; t < tile_end; ++t)
    for (int64_t b = 0; b < nb; ++b)
      for (int row = 0; row < kTile; ++row) {
        const int64_t at = (t * nb + b) * kTile + row;
        const float d = static_cast<float>(w.scales[at]), m = offset(w, at, d);
        for (int k = 0; k < kBlock; ++k)
          wt[(b * kBlock + k) * ldw + (t - tile_begin) * kTile + row] =
              static_cast<Out>(d * quant(w, w.qs + (t * nb + b) * w.quant_bytes, row, k) + m);
      }
}

// Σ of n 8-byte words, in four independent chains.
uint64_t sum_words(const uint64_t* p, int64_t n) {
  uint64_t s[4] = {0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4)
    for (int i = 0; i < 4; ++i) s[i] += p[j + i];
  for (; j < n; ++j) s[0] += p[j];
  return s[0] + s[1] + s[2] + s[3];
}

}  // namespace scalar

// ---- AVX512: 16 lanes = the 16 rows of a tile ----
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,fma,f16c")
namespace avx512 {
struct V {
  static constexpr int kLanes = 16;
  using F = __m512;
  using I = __m512i;
  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F cvt(I v) { return _mm512_cvtepi32_ps(v); }
  static I u8_pairs(const uint8_t* p) { return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)p)); }
  static I i8_pairs(const uint8_t* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)p)); }
  static I and_(I v, int mask) { return _mm512_and_si512(v, _mm512_set1_epi32(mask)); }
  static I srli(I v, int n) { return _mm512_srli_epi32(v, n); }
  static I srai(I v, int n) { return _mm512_srai_epi32(v, n); }
  static I slli(I v, int n) { return _mm512_slli_epi32(v, n); }
  static F halves(const at::Half* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_bf16(at::BFloat16* p, F v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
    _mm256_storeu_si256((__m256i*)p, _mm512_cvtepi32_epi16(rounded));
  }
};

#include "quant_gemm_simd.h"

uint64_t sum_words(const uint64_t* p, int64_t n) {
  __m512i s[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
  int64_t j = 0;
  for (; j + 32 <= n; j += 32)
    for (int i = 0; i < 4; ++i) s[i] = _mm512_add_epi64(s[i], _mm512_loadu_si512(p + j + 8 * i));
  uint64_t sum = _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s[0], s[1]), _mm512_add_epi64(s[2], s[3])));
  return sum + scalar::sum_words(p + j, n - j);
}
}  // namespace avx512
#pragma GCC pop_options

// ---- AVX2: 8 lanes, a tile is two sub-tiles ----
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
struct V {
  static constexpr int kLanes = 8;
  using F = __m256;
  using I = __m256i;
  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static I u8_pairs(const uint8_t* p) { return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i*)p)); }
  static I i8_pairs(const uint8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)p)); }
  static I and_(I v, int mask) { return _mm256_and_si256(v, _mm256_set1_epi32(mask)); }
  static I srli(I v, int n) { return _mm256_srli_epi32(v, n); }
  static I srai(I v, int n) { return _mm256_srai_epi32(v, n); }
  static I slli(I v, int n) { return _mm256_slli_epi32(v, n); }
  static F halves(const at::Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_bf16(at::BFloat16* p, F v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
    _mm_storeu_si128((__m128i*)p,
                     _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1)));
  }
};
#include "quant_gemm_simd.h"
}  // namespace avx2
#pragma GCC pop_options

// ---- dispatch and the torch entry points ----

// fp32 activations on the fp32 paths
void gemv_tiles(const PackedView& w, const float* x, const float* xsum, int64_t num_rows, float* y,
                int64_t out_features, const float* bias, int64_t tile_begin, int64_t tile_end) {
  const int64_t K = w.num_blocks * kBlock;
  switch (sgnb::active_isa()) {
    case sgnb::Isa::kAvx512Vnni:
    case sgnb::Isa::kAvx512:
      return avx512::gemv_tiles(w, avx512::ActF32{x, K}, xsum, num_rows, y, out_features, bias, tile_begin,
                                tile_end);
    case sgnb::Isa::kAvx2:
      return avx2::gemv_tiles(w, avx2::ActF32{x, K}, xsum, num_rows, y, out_features, bias, tile_begin, tile_end);
    default:
      return scalar::gemv_tiles(w, x, xsum, num_rows, y, out_features, bias, tile_begin, tile_end);
  }
}

template <class Out>
void dequant_tiles(const PackedView& w, int64_t tile_begin, int64_t tile_end, Out* wt, int64_t ldw) {
  switch (sgnb::active_isa()) {
    case sgnb::Isa::kAvx512Vnni:
    case sgnb::Isa::kAvx512: return avx512::dequant_tiles(w, tile_begin, tile_end, wt, ldw);
    case sgnb::Isa::kAvx2: return avx2::dequant_tiles(w, tile_begin, tile_end, wt, ldw);
    default: return scalar::dequant_tiles(w, tile_begin, tile_end, wt, ldw);
  }
}

QType parse_qtype(const std::string& name) {
  if (name == "q4_0") return QType::kQ4_0;
  if (name == "q4_1") return QType::kQ4_1;
  if (name == "q8_0") return QType::kQ8_0;
  TORCH_CHECK_VALUE(false, "quant_linear: qtype must be q4_0, q4_1 or q8_0, got '", name, "'");
}

bool vnni_serves(int64_t num_rows, bool is_fp32) {
  return can_use_vnni() && (is_fp32 || num_rows <= kMaxGemvRows);
}

PackedView check_packed(const at::Tensor& qs, const at::Tensor& scales, const c10::optional<at::Tensor>& mins,
                        const std::string& qtype_name, int64_t out_features) {
  const QType qtype = parse_qtype(qtype_name);
  const int64_t quant_bytes = qtype == QType::kQ8_0 ? 512 : 256;
  TORCH_CHECK_VALUE(qs.dim() == 3 && qs.scalar_type() == at::kByte && qs.is_contiguous() &&
                        qs.size(2) == quant_bytes,
              "quant_linear: qs must be a contiguous uint8 [num_tiles, num_blocks, ", quant_bytes, "] tensor, got ",
              qs.scalar_type(), " ", qs.sizes());
  const int64_t num_tiles = qs.size(0), num_blocks = qs.size(1);
  TORCH_CHECK_VALUE(out_features > (num_tiles - 1) * kTile && out_features <= num_tiles * kTile,
              "quant_linear: out_features ", out_features, " does not fit ", num_tiles, " tiles of ", kTile, " rows");
  auto check_scales = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.scalar_type() == at::kHalf && t.is_contiguous() && t.dim() == 3 && t.size(0) == num_tiles &&
                    t.size(1) == num_blocks && t.size(2) == kTile,
                "quant_linear: ", name, " must be a contiguous fp16 [", num_tiles, ", ", num_blocks, ", ", kTile,
                "] tensor, got ", t.scalar_type(), " ", t.sizes());
  };
  check_scales(scales, "scales");
  TORCH_CHECK_VALUE(mins.has_value() == (qtype == QType::kQ4_1), "quant_linear: mins must be given for q4_1 only");
  if (mins) check_scales(*mins, "mins");
  return PackedView{qtype, qs.data_ptr<uint8_t>(), scales.data_ptr<at::Half>(),
                    mins ? mins->data_ptr<at::Half>() : nullptr, num_tiles, num_blocks, quant_bytes};
}

// x [num_rows, in_features] fp32|bf16 -> [num_rows, out_features], same dtype.
at::Tensor quant_linear(const at::Tensor& x, const at::Tensor& qs, const at::Tensor& scales,
                        const c10::optional<at::Tensor>& mins, const std::string& qtype, int64_t out_features,
                        const c10::optional<at::Tensor>& bias) {
  const PackedView w = check_packed(qs, scales, mins, qtype, out_features);
  const int64_t K = w.num_blocks * kBlock;
  TORCH_CHECK_VALUE(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "quant_linear: x must be a CPU fp32 or bf16 tensor, got ", x.device(), " ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 2 && x.size(1) == K, "quant_linear: x must be [num_rows, ", K, "], got ", x.sizes());
  TORCH_CHECK_VALUE(x.is_contiguous(), "quant_linear: x must be contiguous");
  TORCH_CHECK_VALUE(!bias || (bias->dim() == 1 && bias->size(0) == out_features && bias->is_floating_point()),
              "quant_linear: bias must be a float [", out_features, "] tensor");
  const int64_t num_rows = x.size(0);
  if (num_rows == 0) return at::empty({0, out_features}, x.options());

  const bool is_fp32 = x.scalar_type() == at::kFloat;
  const bool use_vnni = vnni_serves(num_rows, is_fp32);
  // prefill: dequantize slabs of W.T in x's dtype, at::mm each (bf16: oneDNN's bf16 dot products outrun the int8
  // path there)
  if (num_rows > kMaxGemvRows && !use_vnni) {
    at::Tensor out = at::empty({num_rows, out_features}, x.options());
    at::Tensor bias_x = bias ? bias->to(x.scalar_type()).contiguous() : at::Tensor();
    const int64_t slab_tiles = std::min(kSlabTiles, w.num_tiles);
    at::Tensor wt = at::empty({K, slab_tiles * kTile}, x.options());     // [K, slab rows]
    for (int64_t t0 = 0; t0 < w.num_tiles; t0 += slab_tiles) {
      const int64_t t1 = std::min(w.num_tiles, t0 + slab_tiles);
      const int64_t n0 = t0 * kTile, n = std::min(out_features, t1 * kTile) - n0;
      at::parallel_for(t0, t1, 1, [&](int64_t begin, int64_t end) {
        if (is_fp32)
          dequant_tiles(w, begin, end, wt.data_ptr<float>() + (begin - t0) * kTile, wt.size(1));
        else
          dequant_tiles(w, begin, end, wt.data_ptr<at::BFloat16>() + (begin - t0) * kTile, wt.size(1));
      });
      at::Tensor slab = wt.narrow(1, 0, n), y = out.narrow(1, n0, n);
      if (bias) at::addmm_out(y, bias_x.narrow(0, n0, n), x, slab);
      else at::mm_out(y, x, slab);
    }
    return out;
  }

  // The activations' per-call forms go into plain buffers, not torch ops: at one row, dispatching a few torch
  // ops per matmul would cost about as much as the matmul itself.
  at::Tensor bias_f = bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const float* bp = bias ? bias_f.data_ptr<float>() : nullptr;
  at::Tensor out = at::empty({num_rows, out_features}, x.options());
  std::vector<float> y_fp32(is_fp32 ? 0 : num_rows * out_features);   // bf16 x: the results before the cast
  float* yp = is_fp32 ? out.data_ptr<float>() : y_fp32.data();
  if (use_vnni) {
    vnni_linear(w, x.data_ptr(), !is_fp32, num_rows, yp, out_features, bp);
  } else {
    const int64_t n = num_rows * K;
    std::vector<float> xf;                  // bf16 x as fp32
    if (!is_fp32) {
      const at::BFloat16* xb = x.data_ptr<at::BFloat16>();
      xf.resize(n);
      for (int64_t i = 0; i < n; ++i) xf[i] = static_cast<float>(xb[i]);
    }
    const float* xp = is_fp32 ? x.data_ptr<float>() : xf.data();
    std::vector<float> xsum(num_rows * w.num_blocks);   // [rows, num_blocks]: Σ x per block
    for (int64_t i = 0; i < num_rows * w.num_blocks; ++i) {
      float sum = 0.0f;
      for (int k = 0; k < kBlock; ++k) sum += xp[i * kBlock + k];
      xsum[i] = sum;
    }
    at::parallel_for(0, w.num_tiles, 1, [&](int64_t begin, int64_t end) {
      gemv_tiles(w, xp, xsum.data(), num_rows, yp, out_features, bp, begin, end);
    });
  }
  if (!is_fp32) {
    at::BFloat16* op = out.data_ptr<at::BFloat16>();
    for (int64_t i = 0; i < num_rows * out_features; ++i) op[i] = at::BFloat16(yp[i]);
  }
  return out;
}

// Reads every byte of the tensors once (split across the threads) and returns a checksum, so that the read
// cannot be optimized away: the time one pass over a weight's bytes takes from memory.
double stream_bytes(const std::vector<at::Tensor>& tensors) {
  std::vector<const uint64_t*> data;
  std::vector<int64_t> ends;                      // cumulative 8-byte words
  int64_t total = 0;
  for (const auto& t : tensors) {
    TORCH_CHECK_VALUE(t.device().is_cpu() && t.is_contiguous(),
                      "stream_bytes: tensors must be contiguous CPU tensors");
    data.push_back(static_cast<const uint64_t*>(t.data_ptr()));
    total += t.numel() * t.element_size() / 8;   // a tail of < 8 bytes is left out
    ends.push_back(total);
  }
  const bool avx512_ok = sgnb::active_isa() >= sgnb::Isa::kAvx512;
  std::vector<uint64_t> partial(at::get_num_threads() + 1, 0);
  at::parallel_for(0, total, 1 << 16, [&](int64_t begin, int64_t end) {
    uint64_t sum = 0;
    size_t i = std::upper_bound(ends.begin(), ends.end(), begin) - ends.begin();
    while (begin < end) {
      const int64_t start = i ? ends[i - 1] : 0, stop = std::min(end, ends[i]);
      const uint64_t* p = data[i] + (begin - start);
      sum += avx512_ok ? avx512::sum_words(p, stop - begin) : scalar::sum_words(p, stop - begin);
      begin = stop;
      ++i;
    }
    partial[at::get_thread_num()] += sum;
  });
  uint64_t sum = 0;
  for (uint64_t s : partial) sum += s;
  return static_cast<double>(sum);
}

}  // namespace sgnb_quant

void register_quant_gemm(pybind11::module_& m) {
  m.def("quant_linear", &sgnb_quant::quant_linear, pybind11::arg("x"), pybind11::arg("qs"), pybind11::arg("scales"),
        pybind11::arg("mins"), pybind11::arg("qtype"), pybind11::arg("out_features"), pybind11::arg("bias"),
        "x @ W.T (+ bias) for a packed 4/8-bit W (sgnb.kernels.quant_weights.PackedWeight's buffers)");
  m.def("stream_bytes", &sgnb_quant::stream_bytes, pybind11::arg("tensors"),
        "read every byte of the tensors once (multithreaded); returns a checksum");
}
