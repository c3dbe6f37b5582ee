// The sgnb CPU extension's module: each kernel file registers its functions here.
// Built by sgnb/kernels/cpu_extension.py (torch.utils.cpp_extension) into the user cache.
#include <torch/extension.h>

#include <stdexcept>

#include "cpu_features.h"

void register_quant_gemm(pybind11::module_& m);
void register_fused_ops(pybind11::module_& m);
void register_decode_stack(pybind11::module_& m);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "sgnb CPU kernels: packed 4/8-bit GEMV/GEMM, fused decode-step ops and a whole decode stack";
  m.def("cpu_isa", [] { return std::string(sgnb::isa_name(sgnb::active_isa())); },
        "the vector ISA the kernels dispatch to now: avx512_vnni, avx512, avx2 or scalar");
  m.def("detected_isa", [] { return std::string(sgnb::isa_name(sgnb::detect_isa())); },
        "the best vector ISA this CPU has");
  m.def("set_isa_cap", [](const std::string& name) {
          auto previous = sgnb::isa_cap().exchange(static_cast<int>(sgnb::isa_from_name(name)));
          return std::string(sgnb::isa_name(static_cast<sgnb::Isa>(previous)));
        },
        "cap the ISA kernels dispatch to (tests run every path); returns the previous cap");
  register_quant_gemm(m);
  register_fused_ops(m);
  register_decode_stack(m);
}
