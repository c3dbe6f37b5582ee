// The kernels' C++ entry points, for callers inside the extension (decode_stack.cpp) as well as pybind.
// Semantics: sgnb/kernels/fused_ref.py, torch_ref.decode_attention and quant_linear.quant_linear_ref.
#pragma once

#include <torch/extension.h>

#include <string>

namespace sgnb_ops {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// residual += x in place; returns rms_norm(residual)
at::Tensor add_rms_norm(const at::Tensor& x, at::Tensor residual, const at::Tensor& weight, double eps);
at::Tensor silu_mul(const at::Tensor& gate_up);
void rope_store_kv(at::Tensor qkv, const at::Tensor& positions, const at::Tensor& cos, const at::Tensor& sin,
                   int64_t num_heads, int64_t num_kv_heads, at::Tensor k_buffer, at::Tensor v_buffer,
                   const at::Tensor& loc);
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_buffer, const at::Tensor& v_buffer,
                            const at::Tensor& kv_indptr, const at::Tensor& kv_indices, double sm_scale);

// decode_attention in two steps, for callers that split its tasks over threads themselves (decode_stack.cpp):
// the constructor checks the arguments and allocates `out` [batch, num_heads, head_dim]; run(begin, end) fills
// the tasks [begin, end) of num_tasks (task = request * num_kv_heads + kv head), and throws nothing itself.
// rebind points it at another layer's q and pool of the same shapes (the indices stay checked; out is reused).
struct DecodeAttention {
  DecodeAttention(const at::Tensor& q, const at::Tensor& k_buffer, const at::Tensor& v_buffer,
                  const at::Tensor& kv_indptr, const at::Tensor& kv_indices, double sm_scale);
  void run(int64_t begin, int64_t end) const;
  void rebind(const at::Tensor& q, const at::Tensor& k_buffer, const at::Tensor& v_buffer);

  at::Tensor q, k_buffer, v_buffer, indptr, indices, out;   // indptr, indices: checked int64 copies
  double sm_scale;
  int64_t d, num_kv_heads, group, num_tasks, grain;          // grain: tasks per thread worth waking one for
};

}  // namespace sgnb_ops

namespace sgnb_quant {

at::Tensor quant_linear(const at::Tensor& x, const at::Tensor& qs, const at::Tensor& scales,
                        const c10::optional<at::Tensor>& mins, const std::string& qtype, int64_t out_features,
                        const c10::optional<at::Tensor>& bias);

}  // namespace sgnb_quant
