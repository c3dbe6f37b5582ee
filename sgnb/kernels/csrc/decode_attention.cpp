// Paged decode attention on the CPU: one query token per request over its KV slots in the pool, the signature
// of sgnb.kernels.torch_ref.decode_attention (which the tests hold it to). Grouped-query heads share each K/V
// row read; softmax online in fp32; q and the pool each fp32 or bf16. Bodies per ISA: decode_attention_kernels.h.
#define SGNB_KERNEL_BODY "decode_attention_kernels.h"
#include "fused_isa.h"
#include "fused_checks.h"
#include "kernel_ops.h"

#include <vector>

namespace {

// (request, KV head) tasks are spread over torch's threads once a chunk of them does this many multiply-adds;
// a short batch runs on the calling thread.
constexpr int64_t kParallelWork = 1 << 18;

}  // namespace

namespace sgnb_ops {

DecodeAttention::DecodeAttention(const at::Tensor& q_, const at::Tensor& k_buffer_, const at::Tensor& v_buffer_,
                                 const at::Tensor& kv_indptr, const at::Tensor& kv_indices, double sm_scale_)
    : q(q_), k_buffer(k_buffer_), v_buffer(v_buffer_), sm_scale(sm_scale_) {
  check_heads(q, "q");
  const int64_t batch = q.size(0), num_heads = q.size(1);
  d = q.size(2);
  TORCH_CHECK(k_buffer.dim() == 3 && k_buffer.size(1) > 0 && num_heads % k_buffer.size(1) == 0,
              "q's ", num_heads, " heads must be a multiple of the pool's KV heads, got k_buffer ", k_buffer.sizes());
  num_kv_heads = k_buffer.size(1);
  group = num_heads / num_kv_heads;
  check_pool(k_buffer, v_buffer, num_kv_heads, d);
  TORCH_CHECK(kv_indices.dim() == 1, "kv_indices must be 1-D, got shape ", kv_indices.sizes());
  const int64_t total = kv_indices.size(0);
  indptr = as_index(kv_indptr, "kv_indptr", batch + 1, total + 1);
  indices = as_index(kv_indices, "kv_indices", total, k_buffer.size(0));
  const int64_t* ip = indptr.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(ip[b + 1] > ip[b], "kv_indptr must increase: request ", b, " has ", ip[b + 1] - ip[b],
                " KV slots (a decode query needs at least its own)");
  }
  // the dtype checks, here rather than in a worker thread
  with_dtype(q.scalar_type(), "q", [](auto) {});
  with_dtype(k_buffer.scalar_type(), "k_buffer", [](auto) {});
  out = at::empty({batch, num_heads, d}, q.options());
  num_tasks = batch * num_kv_heads;
  const int64_t work_per_task = std::max<int64_t>(1, (ip[batch] - ip[0]) / std::max<int64_t>(1, batch)) * group * d;
  grain = std::max<int64_t>(1, kParallelWork / work_per_task);
}

void DecodeAttention::rebind(const at::Tensor& q_, const at::Tensor& k_buffer_, const at::Tensor& v_buffer_) {
  auto same = [](const at::Tensor& a, const at::Tensor& b) {
    return a.sizes() == b.sizes() && a.strides() == b.strides() && a.scalar_type() == b.scalar_type() &&
           a.device() == b.device();
  };
  TORCH_CHECK(same(q_, q) && same(k_buffer_, k_buffer) && same(v_buffer_, v_buffer),
              "decode attention: a rebound q and pool must keep the first one's shapes, strides and dtypes");
  q = q_;
  k_buffer = k_buffer_;
  v_buffer = v_buffer_;
}

void DecodeAttention::run(int64_t begin, int64_t end) const {
  if (begin >= end) return;
  with_dtype(q.scalar_type(), "q", [&](auto qt) {
    using Q = decltype(qt);
    with_dtype(k_buffer.scalar_type(), "k_buffer", [&](auto kt) {
      using KV = decltype(kt);
      with_isa([&](auto k) {
        using K = decltype(k);
        std::vector<float> scratch(K::scratch_floats(group, d));
        K::template decode_tasks<Q, KV>(begin, end, q.data_ptr<Q>(), q.stride(0), q.stride(1), k_buffer.data_ptr<KV>(),
                                        k_buffer.stride(0), k_buffer.stride(1), v_buffer.data_ptr<KV>(),
                                        v_buffer.stride(0), v_buffer.stride(1), indptr.data_ptr<int64_t>(),
                                        indices.data_ptr<int64_t>(), out.data_ptr<Q>(), out.stride(0), out.stride(1),
                                        num_kv_heads, group, d, static_cast<float>(sm_scale), scratch.data());
      });
    });
  });
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_buffer, const at::Tensor& v_buffer,
                            const at::Tensor& kv_indptr, const at::Tensor& kv_indices, double sm_scale) {
  const DecodeAttention call(q, k_buffer, v_buffer, kv_indptr, kv_indices, sm_scale);
  at::parallel_for(0, call.num_tasks, call.grain, [&](int64_t b, int64_t e) { call.run(b, e); });
  return call.out;
}

}  // namespace sgnb_ops

void register_decode_attention(pybind11::module_& m) {
  namespace py = pybind11;
  using namespace sgnb_ops;
  m.def("decode_attention", &decode_attention,
        "one query per request [B, H, D] over its paged KV slots (kv_indptr, kv_indices) -> [B, H, D]",
        py::arg("q"), py::arg("k_buffer"), py::arg("v_buffer"), py::arg("kv_indptr"), py::arg("kv_indices"),
        py::arg("sm_scale"));
}
