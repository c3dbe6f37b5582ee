// Runtime CPU dispatch: which vector ISA the kernels use.
// Kernel files compile their AVX512 / AVX2 bodies with `__attribute__((target(...)))` (or
// `#pragma GCC target`) and branch on `active_isa()` per call; the extension itself is built for baseline x86-64.
// `set_isa_cap` (Python: `ext.set_isa_cap("avx2")`) lowers the choice, so tests run every path on one machine.
#pragma once

#include <atomic>
#include <cstring>
#include <string>

namespace sgnb {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Vnni = 3 };

// kAvx512 means avx512f+bw+vl; kAvx512Vnni adds avx512_vnni (int8 dot products: the packed matmuls).
inline Isa detect_isa() {
  static const Isa found = [] {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")) {
      return __builtin_cpu_supports("avx512vnni") ? Isa::kAvx512Vnni : Isa::kAvx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
      return Isa::kAvx2;
    }
#endif
    return Isa::kScalar;
  }();
  return found;
}

inline std::atomic<int>& isa_cap() {
  static std::atomic<int> cap{static_cast<int>(Isa::kAvx512Vnni)};
  return cap;
}

// The ISA kernels dispatch to now: the CPU's best, lowered by the cap.
inline Isa active_isa() {
  int found = static_cast<int>(detect_isa());
  int cap = isa_cap().load(std::memory_order_relaxed);
  return static_cast<Isa>(found < cap ? found : cap);
}

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512Vnni: return "avx512_vnni";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

inline Isa isa_from_name(const std::string& name) {
  if (name == "avx512_vnni") return Isa::kAvx512Vnni;
  if (name == "avx512") return Isa::kAvx512;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "scalar") return Isa::kScalar;
  throw std::invalid_argument("unknown ISA '" + name + "': expected avx512_vnni, avx512, avx2 or scalar");
}

}  // namespace sgnb
