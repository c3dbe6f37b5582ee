// A Llama decoder stack's decode step in one call: every layer's norms, packed projections, RoPE + KV store and
// paged decode attention run from C++, so a step pays one Python call instead of about a dozen per layer (on a
// 2-core CPU at batch 1 those calls cost more than the layers' non-matmul work itself).
//
// The weights are bound once (DecodeStack's constructor keeps references to the model's tensors); each step
// passes the batch's tensors. The math is exactly the per-layer fused path of sgnb/engine/models/llama.py
// (DecoderLayer.forward_fused), op for op, so the results are bit for bit the same.
//
// Threads: on the int8 path (quant_vnni.cpp) the whole step is ONE parallel region. Its phases (a norm, a
// matmul's tiles, the attention's tasks) are split over the threads and separated by spinning barriers, so a
// step wakes the thread pool once instead of four times per layer. That matters beyond the saved fork/joins:
// once a second Python thread has used torch's OpenMP (a notebook's own torch code does), libgomp counts more
// threads than cores and puts idle workers to sleep at once, and every parallel region then pays a wake-up;
// at batch 1 that took the engine from 200 to 85 tokens/s on a 2-core machine. Elsewhere (other ISAs, bf16
// beyond the int8 path's rows, one thread) each op runs as its own call.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "kernel_ops.h"
#include "quant_packed.h"

namespace {

using sgnb_quant::ActQ8Buffers;
using sgnb_quant::kTile;

// x @ W.T (+ bias) for a packed W (sgnb.kernels.quant_weights.PackedWeight's buffers), checked once.
struct PackedLinear {
  PackedLinear(at::Tensor qs_, at::Tensor scales_, c10::optional<at::Tensor> mins_, std::string qtype_,
               int64_t out_features_, c10::optional<at::Tensor> bias_)
      : qs(std::move(qs_)), scales(std::move(scales_)), mins(std::move(mins_)), qtype(std::move(qtype_)),
        out_features(out_features_), bias(std::move(bias_)),
        view(sgnb_quant::check_packed(qs, scales, mins, qtype, out_features)) {
    TORCH_CHECK_VALUE(!bias || (bias->dim() == 1 && bias->size(0) == out_features && bias->is_floating_point()),
                      "PackedLinear: bias must be a float [", out_features, "] tensor");
    if (bias) bias_f32 = bias->to(at::kFloat).contiguous();   // what quant_linear adds
  }

  at::Tensor operator()(const at::Tensor& x) const {
    return sgnb_quant::quant_linear(x, qs, scales, mins, qtype, out_features, bias);
  }

  const float* bias_data() const { return bias ? bias_f32.data_ptr<float>() : nullptr; }

  at::Tensor qs, scales;
  c10::optional<at::Tensor> mins;
  std::string qtype;
  int64_t out_features;
  c10::optional<at::Tensor> bias;
  sgnb_quant::PackedView view;
  at::Tensor bias_f32;
};

struct LayerWeights {
  at::Tensor input_norm, post_attention_norm;      // [hidden]
  PackedLinear qkv, o, gate_up, down;
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// [begin, end) of `total` for thread `tid` of `num_threads`: contiguous, even chunks (at::parallel_for's split)
inline std::pair<int64_t, int64_t> chunk(int64_t total, int tid, int num_threads) {
  const int64_t size = (total + num_threads - 1) / num_threads;
  const int64_t begin = std::min(total, tid * size);
  return {begin, std::min(total, begin + size)};
}

// While a thread waits at a barrier, the memory bus would idle: it asks instead for the cache lines the coming
// phases read first, a few per wait loop: the pool rows of the coming attention (K and V of each slot it reads,
// in order), then the head of every thread's tile chunk of the coming matmul, in turn. A line another core
// fetched comes from that core's cache, not from memory.
class Prefetcher {
 public:
  // what comes next: the attention over k_buffer/v_buffer's slots `indices` (may be none), then w's tiles split
  // over num_threads as `chunk` splits them
  void target(const sgnb_quant::PackedView& w, int num_threads, const at::Tensor* k_buffer = nullptr,
              const at::Tensor* v_buffer = nullptr, const at::Tensor* indices = nullptr) {
    num_ranges_ = 0;
    offset_ = 0;
    num_slots_ = next_slot_ = 0;
    if (indices) {
      k_ = static_cast<const char*>(k_buffer->data_ptr());
      v_ = static_cast<const char*>(v_buffer->data_ptr());
      k_slot_bytes_ = k_buffer->stride(0) * k_buffer->element_size();
      v_slot_bytes_ = v_buffer->stride(0) * v_buffer->element_size();
      // a slot's heads, first to last (the pool's rows are contiguous in head_dim)
      row_bytes_ = ((k_buffer->size(1) - 1) * k_buffer->stride(1) + k_buffer->size(2)) * k_buffer->element_size();
      slots_ = indices->data_ptr<int64_t>();
      num_slots_ = std::min<int64_t>(indices->numel(), kBudgetBytes / std::max<int64_t>(1, 2 * row_bytes_));
    }
    const int64_t half_bytes = w.num_blocks * kTile * 2;       // one tile's scales (or mins), fp16
    for (int t = 0; t < num_threads && num_ranges_ + 3 <= kMaxRanges; ++t) {
      const auto [begin, end] = chunk(w.num_tiles, t, num_threads);
      if (begin >= end) continue;
      add(reinterpret_cast<const char*>(w.qs) + begin * w.num_blocks * w.quant_bytes,
          (end - begin) * w.num_blocks * w.quant_bytes);
      add(reinterpret_cast<const char*>(w.scales) + begin * half_bytes, (end - begin) * half_bytes);
      if (w.mins) add(reinterpret_cast<const char*>(w.mins) + begin * half_bytes, (end - begin) * half_bytes);
    }
  }

  // a slot's K and V rows, or one more line of each range; false once the budget is asked for
  bool step() {
    if (next_slot_ < num_slots_) {
      const int64_t slot = slots_[next_slot_++];
      for (int64_t b = 0; b < row_bytes_; b += 64) {
        __builtin_prefetch(k_ + slot * k_slot_bytes_ + b, 0, 3);
        __builtin_prefetch(v_ + slot * v_slot_bytes_ + b, 0, 3);
      }
      return true;
    }
    if (offset_ >= kBudgetBytes) return false;
    bool any = false;
    for (int r = 0; r < num_ranges_; ++r) {
      if (offset_ < lens_[r]) {
        __builtin_prefetch(starts_[r] + offset_, 0, 3);
        any = true;
      }
    }
    offset_ += 64;
    return any;
  }

 private:
  // per range, and for the pool rows: about what a wait can bring in, and well inside a core's L2
  static constexpr int64_t kBudgetBytes = 256 << 10;
  static constexpr int kMaxRanges = 48;
  void add(const char* start, int64_t len) {
    starts_[num_ranges_] = start;
    lens_[num_ranges_++] = len;
  }
  const char* starts_[kMaxRanges];
  int64_t lens_[kMaxRanges];
  int num_ranges_ = 0;
  int64_t offset_ = 0;
  const char* k_ = nullptr;
  const char* v_ = nullptr;
  const int64_t* slots_ = nullptr;
  int64_t k_slot_bytes_ = 0, v_slot_bytes_ = 0, row_bytes_ = 0, num_slots_ = 0, next_slot_ = 0;
};

// A barrier for one parallel region's threads that spins instead of sleeping (a phase of a decode step lasts
// microseconds, less than a futex wake-up), prefetching meanwhile, and yields after a while so an
// oversubscribed core still moves.
class SpinBarrier {
 public:
  void wait(int num_threads, Prefetcher& prefetcher) {
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == num_threads) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(generation + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (prefetcher.step()) continue;
      if (spins < kSpinsBeforeYield) cpu_relax();
      else std::this_thread::yield();
    }
  }

 private:
  static constexpr int kSpinsBeforeYield = 1 << 14;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<int> generation_{0};
};

class DecodeStack {
 public:
  // final_norm and lm_head (both or neither): the model's last norm and packed LM head, for forward_logits
  DecodeStack(std::vector<LayerWeights> layers, double eps, int64_t num_heads, int64_t num_kv_heads,
              int64_t head_dim, c10::optional<at::Tensor> final_norm, std::optional<PackedLinear> lm_head)
      : layers_(std::move(layers)), final_norm_(std::move(final_norm)), lm_head_(std::move(lm_head)), eps_(eps),
        num_heads_(num_heads), num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
    TORCH_CHECK_VALUE(!layers_.empty(), "DecodeStack: no layers");
    TORCH_CHECK_VALUE(final_norm_.has_value() == lm_head_.has_value(),
                      "DecodeStack: give final_norm and lm_head together, or neither");
    TORCH_CHECK_VALUE(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0 && head_dim > 0,
                      "DecodeStack: bad head counts ", num_heads, " / ", num_kv_heads, " of ", head_dim);
    for (const LayerWeights& layer : layers_) {
      for (const PackedLinear* w : {&layer.qkv, &layer.o, &layer.gate_up, &layer.down}) {
        max_blocks_ = std::max(max_blocks_, w->view.num_blocks);
        max_out_ = std::max(max_out_, w->out_features);
      }
    }
  }

  // x: the input embeddings [batch, hidden] (becomes the residual stream, updated in place); cos, sin: the
  // RoPE tables [max_pos, head_dim]; k_buffers, v_buffers: the pool per layer. Returns (x, residual) after the
  // last layer: the caller applies the final add + norm.
  std::tuple<at::Tensor, at::Tensor> forward(at::Tensor x, const at::Tensor& positions, const at::Tensor& cos,
                                             const at::Tensor& sin, const std::vector<at::Tensor>& k_buffers,
                                             const std::vector<at::Tensor>& v_buffers,
                                             const at::Tensor& out_cache_loc, const at::Tensor& kv_indptr,
                                             const at::Tensor& kv_indices, double sm_scale) const {
    const Step step{positions, cos, sin, k_buffers, v_buffers, out_cache_loc, kv_indptr, kv_indices, sm_scale};
    auto [out, residual, logits] = run(std::move(x), step, false);
    return {out, residual};
  }

  // forward, then the final add + norm and the LM head: logits [batch, vocab] in x's dtype, the same bits as
  // quant_linear(add_rms_norm(x, residual, final_norm)) on forward's results.
  at::Tensor forward_logits(at::Tensor x, const at::Tensor& positions, const at::Tensor& cos, const at::Tensor& sin,
                            const std::vector<at::Tensor>& k_buffers, const std::vector<at::Tensor>& v_buffers,
                            const at::Tensor& out_cache_loc, const at::Tensor& kv_indptr,
                            const at::Tensor& kv_indices, double sm_scale) const {
    TORCH_CHECK_VALUE(lm_head_.has_value(), "DecodeStack.forward_logits: this stack has no LM head");
    const Step step{positions, cos, sin, k_buffers, v_buffers, out_cache_loc, kv_indptr, kv_indices, sm_scale};
    return std::get<2>(run(std::move(x), step, true));
  }

  bool has_lm_head() const { return lm_head_.has_value(); }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  bool one_region = true;     // false: every step runs op by op (tests and benchmarks compare the two)
  const std::string& last_path() const { return last_path_; }

 private:
  struct Step {
    const at::Tensor& positions;
    const at::Tensor& cos;
    const at::Tensor& sin;
    const std::vector<at::Tensor>& k_buffers;
    const std::vector<at::Tensor>& v_buffers;
    const at::Tensor& out_cache_loc;
    const at::Tensor& kv_indptr;
    const at::Tensor& kv_indices;
    double sm_scale;
  };

  // (out, residual, logits: undefined unless with_logits) by the one-region or the op-by-op path
  std::tuple<at::Tensor, at::Tensor, at::Tensor> run(at::Tensor x, const Step& step, bool with_logits) const {
    const int64_t num_layers = static_cast<int64_t>(layers_.size());
    TORCH_CHECK_VALUE(static_cast<int64_t>(step.k_buffers.size()) == num_layers &&
                          static_cast<int64_t>(step.v_buffers.size()) == num_layers,
                      "DecodeStack: expected ", num_layers, " k and v buffers, got ", step.k_buffers.size(),
                      " and ", step.v_buffers.size());
    // the rows quant_linear itself would run on the int8 path, so that both paths give the same bits
    const bool is_fp32 = x.scalar_type() == at::kFloat;
    const bool is_int8_path = x.dim() == 2 && x.is_contiguous() && x.size(0) > 0 &&
                              (is_fp32 || x.scalar_type() == at::kBFloat16) &&
                              sgnb_quant::vnni_serves(x.size(0), is_fp32);
    if (one_region && is_int8_path && at::get_num_threads() > 1 && !at::in_parallel_region()) {
      last_path_ = "one_region";
      return forward_region(std::move(x), step, with_logits);
    }
    last_path_ = "per_op";
    auto [out, residual] = forward_per_op(std::move(x), step);
    at::Tensor logits;
    if (with_logits) logits = (*lm_head_)(sgnb_ops::add_rms_norm(out, residual, *final_norm_, eps_));
    return {out, residual, logits};
  }

  at::Tensor q_heads(const at::Tensor& qkv) const {     // [batch, num_heads, head_dim], a view of qkv
    return qkv.view({qkv.size(0), num_heads_ + 2 * num_kv_heads_, head_dim_}).narrow(1, 0, num_heads_);
  }

  // Each op a call of its own (its own threads).
  std::tuple<at::Tensor, at::Tensor> forward_per_op(at::Tensor x, const Step& s) const {
    at::Tensor residual = x;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const LayerWeights& layer = layers_[i];
      at::Tensor h = i == 0 ? sgnb_ops::rms_norm(x, layer.input_norm, eps_)
                            : sgnb_ops::add_rms_norm(x, residual, layer.input_norm, eps_);
      at::Tensor qkv = layer.qkv(h);              // [batch, (num_heads + 2 num_kv_heads) head_dim]
      sgnb_ops::rope_store_kv(qkv, s.positions, s.cos, s.sin, num_heads_, num_kv_heads_, s.k_buffers[i],
                              s.v_buffers[i], s.out_cache_loc);
      at::Tensor o = sgnb_ops::decode_attention(q_heads(qkv), s.k_buffers[i], s.v_buffers[i], s.kv_indptr,
                                                s.kv_indices, s.sm_scale);
      h = sgnb_ops::add_rms_norm(layer.o(o.reshape({o.size(0), num_heads_ * head_dim_})), residual,
                                 layer.post_attention_norm, eps_);
      x = layer.down(sgnb_ops::silu_mul(layer.gate_up(h)));
    }
    return {x, residual};
  }

  // The whole step in one parallel region (see the top of the file): the same ops on the same data in the same
  // order as forward_per_op, each matmul's tiles and the attention's tasks split over the threads.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_region(at::Tensor x, const Step& s, bool with_logits) const {
    // up to this many rows, every thread quantizes a matmul's whole input for itself: cheaper than a barrier
    constexpr int64_t kPrivateRows = 8;
    const int64_t rows = x.size(0);
    const bool is_fp32 = x.scalar_type() == at::kFloat;
    const int max_threads = at::get_num_threads();
    const PackedLinear* head = with_logits ? &*lm_head_ : nullptr;
    const int64_t max_blocks = std::max(max_blocks_, head ? head->view.num_blocks : 0);
    const int64_t max_out = std::max(max_out_, head ? head->out_features : 0);
    // the matmul input of the moment, quantized: one per thread (few rows), or one shared
    std::vector<ActQ8Buffers> acts(rows <= kPrivateRows ? max_threads : 1);
    for (ActQ8Buffers& a : acts) a.resize(rows, max_blocks);
    // bf16: a matmul's results before the cast (not zeroed: the tiles write every entry they cast)
    std::unique_ptr<float[]> y_fp32(is_fp32 ? nullptr : new float[rows * max_out]);
    // a layer's tensors; the projections' outputs are reused from layer to layer where the shapes allow
    at::Tensor residual = x, h, qkv, attn, o, gate_up, act, out, logits;
    // the attention's arguments are checked here, once (a bad slot raises before any thread starts); each layer
    // rebinds it to its q and pool
    qkv = at::empty({rows, layers_[0].qkv.out_features}, x.options());
    sgnb_ops::DecodeAttention attention(q_heads(qkv), s.k_buffers[0], s.v_buffers[0], s.kv_indptr, s.kv_indices,
                                        s.sm_scale);
    attn = attention.out.view({rows, num_heads_ * head_dim_});
    SpinBarrier barrier;
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    auto fail = [&] {
      bool expected = false;
      if (failed.compare_exchange_strong(expected, true)) error = std::current_exception();
    };
    auto reuse = [&](const at::Tensor& t, const PackedLinear& w) {
      return t.defined() && t.size(1) == w.out_features ? t : at::empty({rows, w.out_features}, x.options());
    };

#pragma omp parallel num_threads(max_threads)
    {
      const int tid = omp_get_thread_num(), num_threads = omp_get_num_threads();
      Prefetcher prefetcher;
      auto guarded = [&](auto&& f) {
        if (failed.load(std::memory_order_relaxed)) return;
        try { f(); } catch (...) { fail(); }
      };
      // f on thread 0, the others waiting; then every thread continues
      auto serial = [&](auto&& f) {
        if (tid == 0) guarded(f);
        barrier.wait(num_threads, prefetcher);
      };
      // f(begin, end) on this thread's chunk of [0, total); then it aims the prefetcher at what comes next
      // (retarget()) and waits
      auto split = [&](int64_t total, auto&& f, auto&& retarget) {
        const auto [begin, end] = chunk(total, tid, num_threads);
        if (begin < end) guarded([&] { f(begin, end); });
        retarget();
        barrier.wait(num_threads, prefetcher);
      };
      auto keep = [] {};
      // out = in @ W.T (+ bias) for out [rows, out_features], allocated by the serial phase before: in's rows
      // quantized, then W's tiles; a bf16 out gets each thread's own tile columns cast
      auto matmul = [&](const PackedLinear& w, const at::Tensor& in, const at::Tensor& out, auto&& retarget) {
        const bool is_q8 = w.view.qtype == sgnb_quant::QType::kQ8_0;
        const bool is_private = acts.size() > 1;
        ActQ8Buffers& a = acts[is_private ? tid : 0];
        if (is_private) {
          guarded([&] { sgnb_quant::vnni_quantize(in.data_ptr(), !is_fp32, is_q8, w.view.num_blocks, 0, rows, a); });
        } else {
          split(rows, [&](int64_t begin, int64_t end) {
            sgnb_quant::vnni_quantize(in.data_ptr(), !is_fp32, is_q8, w.view.num_blocks, begin, end, a);
          }, keep);
        }
        split(w.view.num_tiles, [&](int64_t begin, int64_t end) {
          const int64_t n = w.out_features;
          float* y = is_fp32 ? out.data_ptr<float>() : y_fp32.get();
          sgnb_quant::vnni_tiles(w.view, a, y, n, w.bias_data(), begin, end);
          if (!is_fp32) {
            at::BFloat16* ob = out.data_ptr<at::BFloat16>();
            const int64_t c0 = begin * kTile, c1 = std::min(n, end * kTile);
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t c = c0; c < c1; ++c) ob[r * n + c] = at::BFloat16(y[r * n + c]);
          }
        }, retarget);
      };

      // what a waiting thread prefetches next: the coming matmul, or layer i's pool rows and then its o_proj
      auto aim_at = [&](const PackedLinear* w) { return [&, w] { if (w) prefetcher.target(w->view, num_threads); }; };
      auto aim_at_attention = [&](size_t i) {
        return [&, i] {
          prefetcher.target(layers_[i].o.view, num_threads, &s.k_buffers[i], &s.v_buffers[i], &attention.indices);
        };
      };
      for (size_t i = 0; i < layers_.size(); ++i) {
        const LayerWeights& layer = layers_[i];
        if (i == 0) aim_at(&layer.qkv)();
        serial([&] {
          h = i == 0 ? sgnb_ops::rms_norm(x, layer.input_norm, eps_)
                     : sgnb_ops::add_rms_norm(out, residual, layer.input_norm, eps_);
          qkv = reuse(qkv, layer.qkv);
        });
        matmul(layer.qkv, h, qkv, aim_at_attention(i));
        serial([&] {
          sgnb_ops::rope_store_kv(qkv, s.positions, s.cos, s.sin, num_heads_, num_kv_heads_, s.k_buffers[i],
                                  s.v_buffers[i], s.out_cache_loc);
          attention.rebind(q_heads(qkv), s.k_buffers[i], s.v_buffers[i]);
          o = reuse(o, layer.o);
        });
        split(attention.num_tasks, [&](int64_t begin, int64_t end) { attention.run(begin, end); }, keep);
        matmul(layer.o, attn, o, aim_at(&layer.gate_up));
        serial([&] {
          h = sgnb_ops::add_rms_norm(o, residual, layer.post_attention_norm, eps_);
          gate_up = reuse(gate_up, layer.gate_up);
        });
        matmul(layer.gate_up, h, gate_up, aim_at(&layer.down));
        serial([&] {
          act = sgnb_ops::silu_mul(gate_up);
          out = reuse(out, layer.down);
        });
        matmul(layer.down, act, out, aim_at(i + 1 < layers_.size() ? &layers_[i + 1].qkv : head));
      }
      if (head) {
        serial([&] {
          h = sgnb_ops::add_rms_norm(out, residual, *final_norm_, eps_);
          logits = at::empty({rows, head->out_features}, x.options());
        });
        matmul(*head, h, logits, keep);
      }
    }
    if (error) std::rethrow_exception(error);
    return {out, residual, logits};
  }

  std::vector<LayerWeights> layers_;
  c10::optional<at::Tensor> final_norm_;
  std::optional<PackedLinear> lm_head_;
  mutable std::string last_path_;      // how the last step ran: "one_region" or "per_op"
  int64_t max_blocks_ = 0, max_out_ = 0;   // over the layers' projections: the region's buffer sizes
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
      .def(py::init<std::vector<LayerWeights>, double, int64_t, int64_t, int64_t, c10::optional<at::Tensor>,
                    std::optional<PackedLinear>>(),
           py::arg("layers"), py::arg("eps"), py::arg("num_heads"), py::arg("num_kv_heads"), py::arg("head_dim"),
           py::arg("final_norm") = py::none(), py::arg("lm_head") = py::none())
      .def("forward", &DecodeStack::forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"),
           py::arg("positions"), py::arg("cos"), py::arg("sin"), py::arg("k_buffers"), py::arg("v_buffers"),
           py::arg("out_cache_loc"), py::arg("kv_indptr"), py::arg("kv_indices"), py::arg("sm_scale"))
      .def("forward_logits", &DecodeStack::forward_logits, py::call_guard<py::gil_scoped_release>(), py::arg("x"),
           py::arg("positions"), py::arg("cos"), py::arg("sin"), py::arg("k_buffers"), py::arg("v_buffers"),
           py::arg("out_cache_loc"), py::arg("kv_indptr"), py::arg("kv_indices"), py::arg("sm_scale"))
      .def_property_readonly("has_lm_head", &DecodeStack::has_lm_head)
      .def_property_readonly("num_layers", &DecodeStack::num_layers)
      .def_readwrite("one_region", &DecodeStack::one_region,
                     "run a step in one parallel region where the int8 path serves (default); False: op by op")
      .def_property_readonly("last_path", &DecodeStack::last_path,
                             "how the last step ran: 'one_region' or 'per_op' ('' before the first)");
}
