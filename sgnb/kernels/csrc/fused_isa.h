// Compiles a kernel body once per vector ISA and dispatches to the active one.
//
//   #define SGNB_KERNEL_BODY "fused_kernels.h"     // defines `struct Kernels` with static (template) functions
//   #include "fused_isa.h"
//   with_isa([&](auto k) { using K = decltype(k); K::template fn<float>(...); });
//
// The body is included three times, into namespaces scalar / avx2 / avx512 of an anonymous namespace (each
// translation unit has its own copies), each inside its `#pragma GCC target` region with the matching Vec
// (fused_vec.h). The extension is built for baseline x86-64, so only the chosen body runs wider instructions.
// avx512_vnni machines take the avx512 body: these kernels are fp32 math, where int8 dot products do not serve.
#pragma once

#include <torch/extension.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SGNB_HAS_X86 1
#else
#define SGNB_HAS_X86 0
#endif

#include "cpu_features.h"

namespace {

inline float to_f32(float x) { return x; }
inline float to_f32(c10::BFloat16 x) { return static_cast<float>(x); }
template <class T> inline T from_f32(float x) { return static_cast<T>(x); }

namespace scalar {
#define SGNB_VEC_WIDTH 1
#include "fused_vec.h"
#include SGNB_KERNEL_BODY
#undef SGNB_VEC_WIDTH
}  // namespace scalar

#if SGNB_HAS_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
#define SGNB_VEC_WIDTH 8
#include "fused_vec.h"
#include SGNB_KERNEL_BODY
#undef SGNB_VEC_WIDTH
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
namespace avx512 {
#define SGNB_VEC_WIDTH 16
#include "fused_vec.h"
#include SGNB_KERNEL_BODY
#undef SGNB_VEC_WIDTH
}  // namespace avx512
#pragma GCC pop_options
#endif

// f(Kernels{}) with the body of the active ISA (sgnb::active_isa(), lowered by ext.set_isa_cap).
template <class F> void with_isa(F&& f) {
#if SGNB_HAS_X86
  switch (sgnb::active_isa()) {
    case sgnb::Isa::kAvx512Vnni:
    case sgnb::Isa::kAvx512: f(avx512::Kernels{}); return;
    case sgnb::Isa::kAvx2: f(avx2::Kernels{}); return;
    default: break;
  }
#endif
  f(scalar::Kernels{});
}

// f(T{}) for T = float or c10::BFloat16, the element type of `dtype`.
template <class F> void with_dtype(at::ScalarType dtype, const char* name, F&& f) {
  if (dtype == at::kFloat) {
    f(float{});
  } else if (dtype == at::kBFloat16) {
    f(c10::BFloat16{});
  } else {
    TORCH_CHECK(false, name, " must be float32 or bfloat16, got ", dtype);
  }
}

}  // namespace
