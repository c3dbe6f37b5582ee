// Bodies of the fused decode-step ops, compiled once per ISA by fused_isa.h (no include guard). Each function
// handles rows [begin, end) of its op; fused_ops.cpp checks the arguments and spreads rows over threads.
// All math is fp32; a bf16 result is rounded once. Rows are `Vec::N` lanes at a time, then a scalar tail.
struct Kernels {
  // dst[0:n] = src[0:n], converting the element type
  template <class S, class D>
  static void copy_row(const S* src, D* dst, int64_t n) {
    if constexpr (std::is_same_v<S, D>) {
      std::memcpy(dst, src, n * sizeof(S));
    } else {
      int64_t i = 0;
      for (; i + Vec::N <= n; i += Vec::N) Vec::load(src + i).store(dst + i);
      for (; i < n; ++i) dst[i] = from_f32<D>(to_f32(src[i]));
    }
  }

  // out[r] = rms_norm(x[r]) * w; with `residual`, first residual[r] += x[r] (rounded to T) and normalize that.
  template <class T, class W>
  static void rms_norm_rows(int64_t begin, int64_t end, const T* x, int64_t x_stride, T* residual,
                            int64_t residual_stride, const W* weight, T* out, int64_t out_stride, int64_t n,
                            float eps) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * x_stride;
      T* res = residual ? residual + r * residual_stride : nullptr;
      Vec acc = Vec::zero();
      float tail = 0.f;
      int64_t i = 0;
      for (; i + Vec::N <= n; i += Vec::N) {
        Vec v = Vec::load(xr + i);
        if (res) {
          (v + Vec::load(res + i)).store(res + i);
          v = Vec::load(res + i);          // the stored (for bf16: rounded) sum is what gets normalized
        }
        acc = Vec::fma(v, v, acc);
      }
      for (; i < n; ++i) {
        float v = to_f32(xr[i]);
        if (res) {
          res[i] = from_f32<T>(v + to_f32(res[i]));
          v = to_f32(res[i]);
        }
        tail += v * v;
      }
      const float scale = 1.f / std::sqrt((acc.sum() + tail) / static_cast<float>(n) + eps);
      const T* src = res ? res : xr;
      T* o = out + r * out_stride;
      const Vec vscale = Vec::set1(scale);
      for (i = 0; i + Vec::N <= n; i += Vec::N) (Vec::load(src + i) * vscale * Vec::load(weight + i)).store(o + i);
      for (; i < n; ++i) o[i] = from_f32<T>(to_f32(src[i]) * scale * to_f32(weight[i]));
    }
  }

  // out[r] = silu(gate_up[r, :n]) * gate_up[r, n:2n]
  template <class T>
  static void silu_mul_rows(int64_t begin, int64_t end, const T* gate_up, int64_t in_stride, T* out,
                            int64_t out_stride, int64_t n) {
    const Vec one = Vec::set1(1.f);
    for (int64_t r = begin; r < end; ++r) {
      const T* g = gate_up + r * in_stride;
      const T* u = g + n;
      T* o = out + r * out_stride;
      int64_t i = 0;
      for (; i + Vec::N <= n; i += Vec::N) {
        Vec gv = Vec::load(g + i);
        (gv / (one + vexp(Vec::zero() - gv)) * Vec::load(u + i)).store(o + i);
      }
      for (; i < n; ++i) {
        float gv = to_f32(g[i]);
        o[i] = from_f32<T>(gv / (1.f + std::exp(-gv)) * to_f32(u[i]));
      }
    }
  }

  // head [0:d] <- head * cos + cat(head[d/2:], head[:d/2]) * signed_sin, in place
  template <class T, class C>
  static void rotate_head(T* x, const C* c, const C* s, int64_t d) {
    const int64_t half = d / 2;
    int64_t i = 0;
    for (; i + Vec::N <= half; i += Vec::N) {
      Vec a = Vec::load(x + i), b = Vec::load(x + half + i);
      Vec::fma(b, Vec::load(s + i), a * Vec::load(c + i)).store(x + i);
      Vec::fma(a, Vec::load(s + half + i), b * Vec::load(c + half + i)).store(x + half + i);
    }
    for (; i < half; ++i) {
      float a = to_f32(x[i]), b = to_f32(x[half + i]);
      x[i] = from_f32<T>(a * to_f32(c[i]) + b * to_f32(s[i]));
      x[half + i] = from_f32<T>(b * to_f32(c[half + i]) + a * to_f32(s[half + i]));
    }
  }

  // tokens [begin, end): rotate the q and k heads of qkv, then copy k and v heads into the pool at loc
  template <class T, class C, class B>
  static void rope_store_kv_rows(int64_t begin, int64_t end, T* qkv, int64_t qkv_stride, const int64_t* positions,
                                 const C* cos, const C* sin, int64_t num_heads, int64_t num_kv_heads,
                                 int64_t d, B* k_buffer, int64_t kb_slot, int64_t kb_head, B* v_buffer,
                                 int64_t vb_slot, int64_t vb_head, const int64_t* loc) {
    for (int64_t t = begin; t < end; ++t) {
      T* row = qkv + t * qkv_stride;
      const C* c = cos + positions[t] * d;
      const C* s = sin + positions[t] * d;
      for (int64_t h = 0; h < num_heads + num_kv_heads; ++h) rotate_head(row + h * d, c, s, d);
      const T* k = row + num_heads * d;
      const T* v = k + num_kv_heads * d;
      for (int64_t h = 0; h < num_kv_heads; ++h) {
        copy_row(k + h * d, k_buffer + loc[t] * kb_slot + h * kb_head, d);
        copy_row(v + h * d, v_buffer + loc[t] * vb_slot + h * vb_head, d);
      }
    }
  }

  // tokens [begin, end): k_buffer[loc[t]] = k[t], v_buffer[loc[t]] = v[t] (each [heads, d], strided)
  template <class T, class B>
  static void store_kv_rows(int64_t begin, int64_t end, const T* k, int64_t k_tok, int64_t k_head, const T* v,
                            int64_t v_tok, int64_t v_head, int64_t heads, int64_t d, B* k_buffer, int64_t kb_slot,
                            int64_t kb_head, B* v_buffer, int64_t vb_slot, int64_t vb_head, const int64_t* loc) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        copy_row(k + t * k_tok + h * k_head, k_buffer + loc[t] * kb_slot + h * kb_head, d);
        copy_row(v + t * v_tok + h * v_head, v_buffer + loc[t] * vb_slot + h * vb_head, d);
      }
    }
  }
};
