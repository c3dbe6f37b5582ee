// A Llama decoder stack's decode step in one call: every layer's norms, packed projections, RoPE + KV store and
// paged decode attention run from C++, so a step pays one Python call instead of about a dozen per layer (on a
// 2-core CPU at batch 1 those calls cost more than the layers' non-matmul work itself).
//
// The weights are bound once (DecodeStack's constructor keeps references to the model's tensors); each step
// passes the batch's tensors. The math is exactly the per-layer fused path of sgnb/engine/models/llama.py
// (DecoderLayer.forward_fused), op for op, so the results are bit for bit the same.
#include <torch/extension.h>

#include <string>
#include <tuple>
#include <vector>

#include "kernel_ops.h"

namespace {

// x @ W.T (+ bias) for a packed W (sgnb.kernels.quant_weights.PackedWeight's buffers).
struct PackedLinear {
  at::Tensor qs, scales;
  c10::optional<at::Tensor> mins;
  std::string qtype;
  int64_t out_features;
  c10::optional<at::Tensor> bias;

  at::Tensor operator()(const at::Tensor& x) const {
    return sgnb_quant::quant_linear(x, qs, scales, mins, qtype, out_features, bias);
  }
};

struct LayerWeights {
  at::Tensor input_norm, post_attention_norm;      // [hidden]
  PackedLinear qkv, o, gate_up, down;
};

class DecodeStack {
 public:
  DecodeStack(std::vector<LayerWeights> layers, double eps, int64_t num_heads, int64_t num_kv_heads,
              int64_t head_dim)
      : layers_(std::move(layers)), eps_(eps), num_heads_(num_heads), num_kv_heads_(num_kv_heads),
        head_dim_(head_dim) {
    TORCH_CHECK_VALUE(!layers_.empty(), "DecodeStack: no layers");
    TORCH_CHECK_VALUE(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0 && head_dim > 0,
                      "DecodeStack: bad head counts ", num_heads, " / ", num_kv_heads, " of ", head_dim);
  }

  // x: the input embeddings [batch, hidden] (becomes the residual stream, updated in place); cos, sin: the
  // RoPE tables [max_pos, head_dim]; k_buffers, v_buffers: the pool per layer. Returns (x, residual) after the
  // last layer: the caller applies the final add + norm.
  std::tuple<at::Tensor, at::Tensor> forward(at::Tensor x, const at::Tensor& positions, const at::Tensor& cos,
                                             const at::Tensor& sin, const std::vector<at::Tensor>& k_buffers,
                                             const std::vector<at::Tensor>& v_buffers,
                                             const at::Tensor& out_cache_loc, const at::Tensor& kv_indptr,
                                             const at::Tensor& kv_indices, double sm_scale) const {
    const int64_t num_layers = static_cast<int64_t>(layers_.size());
    TORCH_CHECK_VALUE(static_cast<int64_t>(k_buffers.size()) == num_layers &&
                          static_cast<int64_t>(v_buffers.size()) == num_layers,
                      "DecodeStack: expected ", num_layers, " k and v buffers, got ", k_buffers.size(), " and ",
                      v_buffers.size());
    at::Tensor residual = x;
    for (int64_t i = 0; i < num_layers; ++i) {
      const LayerWeights& layer = layers_[i];
      at::Tensor h = i == 0 ? sgnb_ops::rms_norm(x, layer.input_norm, eps_)
                            : sgnb_ops::add_rms_norm(x, residual, layer.input_norm, eps_);
      at::Tensor qkv = layer.qkv(h);              // [batch, (num_heads + 2 num_kv_heads) head_dim]
      sgnb_ops::rope_store_kv(qkv, positions, cos, sin, num_heads_, num_kv_heads_, k_buffers[i], v_buffers[i],
                              out_cache_loc);
      at::Tensor q = qkv.view({qkv.size(0), num_heads_ + 2 * num_kv_heads_, head_dim_}).narrow(1, 0, num_heads_);
      at::Tensor o = sgnb_ops::decode_attention(q, k_buffers[i], v_buffers[i], kv_indptr, kv_indices, sm_scale);
      h = sgnb_ops::add_rms_norm(layer.o(o.reshape({o.size(0), num_heads_ * head_dim_})), residual,
                                 layer.post_attention_norm, eps_);
      x = layer.down(sgnb_ops::silu_mul(layer.gate_up(h)));
    }
    return {x, residual};
  }

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

 private:
  std::vector<LayerWeights> layers_;
  double eps_;
  int64_t num_heads_, num_kv_heads_, head_dim_;
};

}  // namespace

void register_decode_stack(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<PackedLinear>(m, "PackedLinear", "a packed projection: PackedWeight's buffers (+ bias)")
      .def(py::init<at::Tensor, at::Tensor, c10::optional<at::Tensor>, std::string, int64_t,
                    c10::optional<at::Tensor>>(),
           py::arg("qs"), py::arg("scales"), py::arg("mins"), py::arg("qtype"), py::arg("out_features"),
           py::arg("bias"))
      .def("__call__", &PackedLinear::operator(), py::arg("x"));
  py::class_<LayerWeights>(m, "LayerWeights", "one Llama decoder layer's norms and packed projections")
      .def(py::init<at::Tensor, at::Tensor, PackedLinear, PackedLinear, PackedLinear, PackedLinear>(),
           py::arg("input_norm"), py::arg("post_attention_norm"), py::arg("qkv"), py::arg("o"), py::arg("gate_up"),
           py::arg("down"));
  py::class_<DecodeStack>(m, "DecodeStack", "a Llama decoder stack's decode step in one call")
      .def(py::init<std::vector<LayerWeights>, double, int64_t, int64_t, int64_t>(), py::arg("layers"),
           py::arg("eps"), py::arg("num_heads"), py::arg("num_kv_heads"), py::arg("head_dim"))
      .def("forward", &DecodeStack::forward, py::arg("x"), py::arg("positions"), py::arg("cos"), py::arg("sin"),
           py::arg("k_buffers"), py::arg("v_buffers"), py::arg("out_cache_loc"), py::arg("kv_indptr"),
           py::arg("kv_indices"), py::arg("sm_scale"))
      .def_property_readonly("num_layers", &DecodeStack::num_layers);
}
