// The packed 4/8-bit weight layout the quant matmuls read (written by sgnb/kernels/quant_weights.py), shared by
// quant_gemm.cpp (dispatch, the fp32 FMA bodies, the prefill slabs) and quant_vnni.cpp (int8 dot products).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

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

// The int8 dot-product path (quant_vnni.cpp): whether this CPU and the ISA cap allow it, and y = x W.T (+ bias)
// for x [num_rows, K] fp32 or bf16 (is_bf16), y [num_rows, out_features] fp32.
bool can_use_vnni();
void vnni_linear(const PackedView& w, const void* x, bool is_bf16, int64_t num_rows, float* y,
                 int64_t out_features, const float* bias);

}  // namespace sgnb_quant
