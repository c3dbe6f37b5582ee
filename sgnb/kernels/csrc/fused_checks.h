// Argument checks shared by fused_ops.cpp and decode_attention.cpp: clear errors instead of bad memory reads.
#pragma once

#include <torch/extension.h>

namespace {

void check_heads(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.dim() == 3, name, " must be 3-D [rows, heads, head_dim], got shape ", t.sizes());
  TORCH_CHECK(t.stride(2) == 1, name, " must be contiguous in its last dimension");
}

at::Tensor as_index(const at::Tensor& t, const char* name, int64_t size, int64_t limit) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 1 && t.size(0) == size, name, " must be a 1-D CPU tensor of ",
              size, " entries, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kLong || t.scalar_type() == at::kInt, name, " must be int64 or int32");
  at::Tensor out = t.to(at::kLong).contiguous();
  const int64_t* p = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < size; ++i) {
    TORCH_CHECK(p[i] >= 0 && p[i] < limit, name, "[", i, "] = ", p[i], " is out of range [0, ", limit, ")");
  }
  return out;
}

void check_pool(const at::Tensor& k_buffer, const at::Tensor& v_buffer, int64_t num_kv_heads, int64_t head_dim) {
  check_heads(k_buffer, "k_buffer");
  check_heads(v_buffer, "v_buffer");
  TORCH_CHECK(k_buffer.sizes() == v_buffer.sizes() && k_buffer.scalar_type() == v_buffer.scalar_type(),
              "k_buffer and v_buffer must have one shape and dtype, got ", k_buffer.sizes(), " ",
              k_buffer.scalar_type(), " and ", v_buffer.sizes(), " ", v_buffer.scalar_type());
  TORCH_CHECK(k_buffer.size(1) == num_kv_heads && k_buffer.size(2) == head_dim, "k_buffer must be [num_slots, ",
              num_kv_heads, ", ", head_dim, "], got ", k_buffer.sizes());
}

}  // namespace
