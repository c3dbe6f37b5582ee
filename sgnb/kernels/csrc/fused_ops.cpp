// Fused decode-step ops on the CPU: (residual add +) RMSNorm, SiLU * mul, RoPE + KV store into the paged pool,
// and the KV store alone. Each replaces several eager torch ops; the torch references with the same signatures
// are in sgnb/kernels/fused_ref.py (and torch_ref.store_kv). fp32 or bf16 tensors; the last dimension must be
// contiguous. The kernels' bodies (one per ISA) are in fused_kernels.h.
#define SGNB_KERNEL_BODY "fused_kernels.h"
#include "fused_isa.h"
#include "fused_checks.h"
#include "kernel_ops.h"

namespace {

// Rows of this many elements or more in all are spread over torch's threads; fewer run on the calling thread
// (a decode step's 576-float rows are done before a thread pool would wake up).
constexpr int64_t kParallelElements = 32768;

int64_t row_grain(int64_t row_elements) { return std::max<int64_t>(1, kParallelElements / std::max<int64_t>(1, row_elements)); }

void check_rows(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D [num_tokens, features], got shape ", t.sizes());
  TORCH_CHECK(t.size(1) == 0 || t.stride(1) == 1, name, " must be contiguous in its last dimension");
}

}  // namespace

namespace sgnb_ops {

namespace {

at::Tensor norm(const at::Tensor& x, const at::Tensor* residual, const at::Tensor& weight,
                double eps) {
  check_rows(x, "x");
  const int64_t rows = x.size(0), n = x.size(1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == n && weight.is_contiguous() && weight.device().is_cpu(),
              "weight must be a contiguous 1-D CPU tensor of ", n, " entries, got shape ", weight.sizes());
  at::Tensor out = at::empty({rows, n}, x.options());
  if (residual) {
    check_rows(*residual, "residual");
    TORCH_CHECK(residual->sizes() == x.sizes() && residual->scalar_type() == x.scalar_type(),
                "residual must match x's shape and dtype, got ", residual->sizes(), " ", residual->scalar_type());
  }
  with_dtype(x.scalar_type(), "x", [&](auto xt) {
    using T = decltype(xt);
    with_dtype(weight.scalar_type(), "weight", [&](auto wt) {
      using W = decltype(wt);
      const T* xp = x.data_ptr<T>();
      T* rp = residual ? residual->data_ptr<T>() : nullptr;
      const int64_t rs = residual ? residual->stride(0) : 0;
      with_isa([&](auto k) {
        using K = decltype(k);
        at::parallel_for(0, rows, row_grain(n), [&](int64_t b, int64_t e) {
          K::template rms_norm_rows<T, W>(b, e, xp, x.stride(0), rp, rs, weight.data_ptr<W>(), out.data_ptr<T>(),
                                          n, n, static_cast<float>(eps));
        });
      });
    });
  });
  return out;
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return norm(x, nullptr, weight, eps);
}

at::Tensor add_rms_norm(const at::Tensor& x, at::Tensor residual, const at::Tensor& weight, double eps) {
  return norm(x, &residual, weight, eps);
}

at::Tensor silu_mul(const at::Tensor& gate_up) {
  check_rows(gate_up, "gate_up");
  TORCH_CHECK(gate_up.size(1) % 2 == 0, "gate_up must have an even last dimension [T, 2 * I], got ",
              gate_up.sizes());
  const int64_t rows = gate_up.size(0), n = gate_up.size(1) / 2;
  at::Tensor out = at::empty({rows, n}, gate_up.options());
  with_dtype(gate_up.scalar_type(), "gate_up", [&](auto xt) {
    using T = decltype(xt);
    with_isa([&](auto k) {
      using K = decltype(k);
      at::parallel_for(0, rows, row_grain(2 * n), [&](int64_t b, int64_t e) {
        K::template silu_mul_rows<T>(b, e, gate_up.data_ptr<T>(), gate_up.stride(0), out.data_ptr<T>(), n, n);
      });
    });
  });
  return out;
}

void rope_store_kv(at::Tensor qkv, const at::Tensor& positions, const at::Tensor& cos, const at::Tensor& sin,
                   int64_t num_heads, int64_t num_kv_heads, at::Tensor k_buffer, at::Tensor v_buffer,
                   const at::Tensor& loc) {
  check_rows(qkv, "qkv");
  TORCH_CHECK(num_heads > 0 && num_kv_heads > 0, "num_heads and num_kv_heads must be positive");
  for (const auto& [t, name] : {std::pair{&cos, "cos"}, std::pair{&sin, "sin"}}) {
    TORCH_CHECK(t->dim() == 2 && t->is_contiguous() && t->device().is_cpu(), name,
                " must be a contiguous CPU table [max_pos, head_dim], got shape ", t->sizes());
  }
  TORCH_CHECK(cos.sizes() == sin.sizes() && cos.scalar_type() == sin.scalar_type(),
              "cos and sin must have one shape and dtype");
  const int64_t rows = qkv.size(0), d = cos.size(1), max_pos = cos.size(0);
  TORCH_CHECK(d % 2 == 0, "head_dim must be even, got ", d);
  TORCH_CHECK(qkv.size(1) == (num_heads + 2 * num_kv_heads) * d, "qkv must be [num_tokens, (", num_heads,
              " + 2 * ", num_kv_heads, ") * ", d, "], got ", qkv.sizes());
  check_pool(k_buffer, v_buffer, num_kv_heads, d);
  at::Tensor pos = as_index(positions, "positions", rows, max_pos);
  at::Tensor slots = as_index(loc, "loc", rows, k_buffer.size(0));
  with_dtype(qkv.scalar_type(), "qkv", [&](auto xt) {
    using T = decltype(xt);
    with_dtype(cos.scalar_type(), "cos", [&](auto ct) {
      using C = decltype(ct);
      with_dtype(k_buffer.scalar_type(), "k_buffer", [&](auto bt) {
        using B = decltype(bt);
        with_isa([&](auto k) {
          using K = decltype(k);
          at::parallel_for(0, rows, row_grain(qkv.size(1)), [&](int64_t b, int64_t e) {
            K::template rope_store_kv_rows<T, C, B>(
                b, e, qkv.data_ptr<T>(), qkv.stride(0), pos.data_ptr<int64_t>(), cos.data_ptr<C>(),
                sin.data_ptr<C>(), num_heads, num_kv_heads, d, k_buffer.data_ptr<B>(), k_buffer.stride(0),
                k_buffer.stride(1), v_buffer.data_ptr<B>(), v_buffer.stride(0), v_buffer.stride(1),
                slots.data_ptr<int64_t>());
          });
        });
      });
    });
  });
}

void store_kv(at::Tensor k_buffer, at::Tensor v_buffer, const at::Tensor& loc, const at::Tensor& k,
              const at::Tensor& v) {
  check_heads(k, "k");
  check_heads(v, "v");
  TORCH_CHECK(k.sizes() == v.sizes() && k.scalar_type() == v.scalar_type(),
              "k and v must have one shape and dtype, got ", k.sizes(), " and ", v.sizes());
  const int64_t rows = k.size(0), heads = k.size(1), d = k.size(2);
  check_pool(k_buffer, v_buffer, heads, d);
  at::Tensor slots = as_index(loc, "loc", rows, k_buffer.size(0));
  with_dtype(k.scalar_type(), "k", [&](auto xt) {
    using T = decltype(xt);
    with_dtype(k_buffer.scalar_type(), "k_buffer", [&](auto bt) {
      using B = decltype(bt);
      with_isa([&](auto kk) {
        using K = decltype(kk);
        at::parallel_for(0, rows, row_grain(2 * heads * d), [&](int64_t b, int64_t e) {
          K::template store_kv_rows<T, B>(b, e, k.data_ptr<T>(), k.stride(0), k.stride(1), v.data_ptr<T>(),
                                          v.stride(0), v.stride(1), heads, d, k_buffer.data_ptr<B>(),
                                          k_buffer.stride(0), k_buffer.stride(1), v_buffer.data_ptr<B>(),
                                          v_buffer.stride(0), v_buffer.stride(1), slots.data_ptr<int64_t>());
        });
      });
    });
  });
}

}  // namespace sgnb_ops

void register_decode_attention(pybind11::module_& m);   // decode_attention.cpp

void register_fused_ops(pybind11::module_& m) {
  namespace py = pybind11;
  using namespace sgnb_ops;
  m.def("rms_norm", &rms_norm, "x [T, H] * rsqrt(mean(x^2) + eps) * weight, fp32 statistics", py::arg("x"),
        py::arg("weight"), py::arg("eps"));
  m.def("add_rms_norm", &add_rms_norm, "residual += x in place; returns rms_norm(residual)", py::arg("x"),
        py::arg("residual"), py::arg("weight"), py::arg("eps"));
  m.def("silu_mul", &silu_mul, "gate_up [T, 2I] -> silu(gate) * up [T, I]", py::arg("gate_up"));
  m.def("rope_store_kv", &rope_store_kv,
        "rotate qkv's q and k heads in place (rotate-half, signed sin table), store k and v at loc",
        py::arg("qkv"), py::arg("positions"), py::arg("cos"), py::arg("sin"), py::arg("num_heads"),
        py::arg("num_kv_heads"), py::arg("k_buffer"), py::arg("v_buffer"), py::arg("loc"));
  m.def("store_kv", &store_kv, "k_buffer[loc] = k, v_buffer[loc] = v (the paged pool's strided views)",
        py::arg("k_buffer"), py::arg("v_buffer"), py::arg("loc"), py::arg("k"), py::arg("v"));
  register_decode_attention(m);
}
