// The packed 4/8-bit weight layout the quant matmuls read (written by sgnb/kernels/quant_weights.py), shared by
// quant_gemm.cpp (dispatch, the fp32 FMA bodies, the prefill slabs) and quant_vnni.cpp (int8 dot products).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sgnb_quant {

enum class QType { kQ4_0, kQ4_1, kQ8_0 };
constexpr int kTile = 16;           // output rows per packed tile: one fp32 lane each (AVX512)
constexpr int kBlock = 32;          // weights per quant block

// Raw pointers into one PackedWeight's buffers.
struct PackedView {
  QType qtype;
  const uint8_t* qs;          // [num_tiles, num_blocks, quant_bytes]
  const at::Half* scales;     // [num_tiles, num_blocks, kTile]
  const at::Half* mins;       // same, Q4_1 only (else nullptr)
  int64_t num_tiles, num_blocks, quant_bytes;
};

// The checked view of one PackedWeight's buffers (quant_gemm.cpp): a clear error for a wrong shape or dtype.
PackedView check_packed(const at::Tensor& qs, const at::Tensor& scales, const c10::optional<at::Tensor>& mins,
                        const std::string& qtype, int64_t out_features);

// The int8 dot-product path (quant_vnni.cpp): whether this CPU and the ISA cap allow it, and y = x W.T (+ bias)
// for x [num_rows, K] fp32 or bf16 (is_bf16), y [num_rows, out_features] fp32.
bool can_use_vnni();
// whether quant_linear takes the int8 path for num_rows rows of fp32 (or bf16) activations
bool vnni_serves(int64_t num_rows, bool is_fp32);
void vnni_linear(const PackedView& w, const void* x, bool is_bf16, int64_t num_rows, float* y,
                 int64_t out_features, const float* bias);

// The same path in two steps, for callers that split the work over threads themselves (decode_stack.cpp):
// activation rows [begin, end) into `a` (sized by resize), then output tiles [tile_begin, tile_end) of y.
// Each tile's results are the same bits whichever thread computes it.
struct ActQ8Buffers {
  std::vector<uint8_t> bytes;       // [num_blocks, num_rows, levels, kBlock]
  std::vector<float> scale, xsum;   // [num_blocks, num_rows]
  std::vector<int32_t> offset;      // [num_blocks, num_rows, levels]: Q8_0 weights' correction
  int64_t num_rows = 0;
  void resize(int64_t rows, int64_t num_blocks);
};
void vnni_quantize(const void* x, bool is_bf16, bool is_q8, int64_t num_blocks, int64_t begin, int64_t end,
                   ActQ8Buffers& a);
void vnni_tiles(const PackedView& w, const ActQ8Buffers& a, float* y, int64_t out_features, const float* bias,
                int64_t tile_begin, int64_t tile_end);

}  // namespace sgnb_quant
