// Body of the paged decode attention, compiled once per ISA by fused_isa.h (no include guard).
//
// One task = one (request, KV head): its `group` query heads share every K/V row read from the pool. Keys come
// in chunks of kChunk slots: scores for the chunk, then the online softmax (running max m, sum l, in fp32)
// rescales the accumulators once per chunk and adds p * V. bf16 K/V rows are widened to fp32 once per chunk.
struct Kernels {
  static constexpr int64_t kChunk = 64;
  static constexpr int64_t kPrefetch = 8;

  template <class T>
  static void prefetch(const T* row, int64_t n) {
    const char* p = reinterpret_cast<const char*>(row);
    for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(T)); b += 64) __builtin_prefetch(p + b);
  }

  // floats of scratch one thread needs (decode_tasks' `scratch`)
  static int64_t scratch_floats(int64_t group, int64_t d) {
    return 2 * group * d + group * kChunk + 2 * kChunk * d + 2 * group;
  }

  static float dot(const float* a, const float* b, int64_t n) {
    Vec s0 = Vec::zero(), s1 = Vec::zero();
    int64_t i = 0;
    for (; i + 2 * Vec::N <= n; i += 2 * Vec::N) {
      s0 = Vec::fma(Vec::load(a + i), Vec::load(b + i), s0);
      s1 = Vec::fma(Vec::load(a + i + Vec::N), Vec::load(b + i + Vec::N), s1);
    }
    for (; i + Vec::N <= n; i += Vec::N) s0 = Vec::fma(Vec::load(a + i), Vec::load(b + i), s0);
    float s = (s0 + s1).sum();
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
  }

  // acc[g, 0:d] += p[g * p_stride] * v[0:d] for each g < group: v is read once for all query heads
  static void add_weighted_row(float* acc, const float* p, int64_t p_stride, const float* v, int64_t group,
                               int64_t d) {
    int64_t i = 0;
    for (; i + Vec::N <= d; i += Vec::N) {
      const Vec vv = Vec::load(v + i);
      for (int64_t g = 0; g < group; ++g) {
        float* a = acc + g * d + i;
        Vec::fma(Vec::set1(p[g * p_stride]), vv, Vec::load(a)).store(a);
      }
    }
    for (; i < d; ++i) {
      for (int64_t g = 0; g < group; ++g) acc[g * d + i] += p[g * p_stride] * v[i];
    }
  }

  static void scale_row(float* x, float scale, int64_t n) {
    const Vec vs = Vec::set1(scale);
    int64_t i = 0;
    for (; i + Vec::N <= n; i += Vec::N) (Vec::load(x + i) * vs).store(x + i);
    for (; i < n; ++i) x[i] *= scale;
  }

  // s[0:n] = exp(s - shift); returns their sum
  static float exp_shifted(float* s, int64_t n, float shift) {
    const Vec vshift = Vec::set1(shift);
    Vec total = Vec::zero();
    int64_t i = 0;
    for (; i + Vec::N <= n; i += Vec::N) {
      Vec e = vexp(Vec::load(s + i) - vshift);
      e.store(s + i);
      total = total + e;
    }
    float sum = total.sum();
    for (; i < n; ++i) sum += (s[i] = std::exp(s[i] - shift));
    return sum;
  }

  static float row_max(const float* s, int64_t n) {
    float best = -std::numeric_limits<float>::infinity();
    int64_t i = 0;
    if (n >= Vec::N) {
      Vec m = Vec::load(s);
      for (i = Vec::N; i + Vec::N <= n; i += Vec::N) m = Vec::max(m, Vec::load(s + i));
      best = m.hmax();
    }
    for (; i < n; ++i) best = s[i] > best ? s[i] : best;
    return best;
  }

  // a pool row as fp32: the row itself, or its widened copy in `buf`
  template <class KV>
  static const float* as_f32(const KV* row, float* buf, int64_t d) {
    if constexpr (std::is_same_v<KV, float>) {
      return row;
    } else {
      int64_t i = 0;
      for (; i + Vec::N <= d; i += Vec::N) Vec::load(row + i).store(buf + i);
      for (; i < d; ++i) buf[i] = to_f32(row[i]);
      return buf;
    }
  }

  // tasks [begin, end), task = request * num_kv_heads + kv_head
  template <class Q, class KV>
  static void decode_tasks(int64_t begin, int64_t end, const Q* q, int64_t q_req, int64_t q_head, const KV* kb,
                           int64_t k_slot, int64_t k_head, const KV* vb, int64_t v_slot, int64_t v_head,
                           const int64_t* indptr, const int64_t* indices, Q* out, int64_t o_req, int64_t o_head,
                           int64_t num_kv_heads, int64_t group, int64_t d, float sm_scale, float* scratch) {
    float* qf = scratch;                   // [group, d] queries * sm_scale
    float* acc = qf + group * d;           // [group, d] sum of p * v
    float* scores = acc + group * d;       // [group, kChunk]
    float* kf = scores + group * kChunk;   // [kChunk, d] widened K rows (bf16 pool)
    float* vf = kf + kChunk * d;           // [kChunk, d] widened V rows
    float* m = vf + kChunk * d;            // [group] running max
    float* l = m + group;                  // [group] running sum of exp
    const Vec vscale = Vec::set1(sm_scale);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t req = task / num_kv_heads, h = task % num_kv_heads;
      for (int64_t g = 0; g < group; ++g) {
        const Q* qrow = q + req * q_req + (h * group + g) * q_head;
        int64_t i = 0;
        for (; i + Vec::N <= d; i += Vec::N) (Vec::load(qrow + i) * vscale).store(qf + g * d + i);
        for (; i < d; ++i) qf[g * d + i] = to_f32(qrow[i]) * sm_scale;
        m[g] = -std::numeric_limits<float>::infinity();
        l[g] = 0.f;
      }
      std::fill(acc, acc + group * d, 0.f);
      for (int64_t c0 = indptr[req]; c0 < indptr[req + 1]; c0 += kChunk) {
        const int64_t n = std::min(kChunk, indptr[req + 1] - c0);
        // slots are scattered (a decoding request's slots lie a batch apart): the hardware prefetcher cannot
        // follow them, so ask for K rows kPrefetch keys ahead, and for each V row as its K row is read
        for (int64_t j = 0; j < std::min(kPrefetch, n); ++j) prefetch(kb + indices[c0 + j] * k_slot + h * k_head, d);
        for (int64_t j = 0; j < n; ++j) {
          if (c0 + j + kPrefetch < indptr[req + 1]) prefetch(kb + indices[c0 + j + kPrefetch] * k_slot + h * k_head, d);
          prefetch(vb + indices[c0 + j] * v_slot + h * v_head, d);
          const float* k = as_f32(kb + indices[c0 + j] * k_slot + h * k_head, kf + j * d, d);
          for (int64_t g = 0; g < group; ++g) scores[g * kChunk + j] = dot(qf + g * d, k, d);
        }
        for (int64_t g = 0; g < group; ++g) {
          float* s = scores + g * kChunk;
          const float m_new = std::max(m[g], row_max(s, n));
          const float alpha = std::exp(m[g] - m_new);      // 0 on the first chunk (m = -inf, acc = 0)
          if (alpha != 1.f) scale_row(acc + g * d, alpha, d);
          l[g] = l[g] * alpha + exp_shifted(s, n, m_new);
          m[g] = m_new;
        }
        for (int64_t j = 0; j < n; ++j) {
          const float* v = as_f32(vb + indices[c0 + j] * v_slot + h * v_head, vf + j * d, d);
          add_weighted_row(acc, scores + j, kChunk, v, group, d);
        }
      }
      for (int64_t g = 0; g < group; ++g) {
        Q* o = out + req * o_req + (h * group + g) * o_head;
        const float inv = 1.f / l[g];
        const Vec vinv = Vec::set1(inv);
        int64_t i = 0;
        for (; i + Vec::N <= d; i += Vec::N) (Vec::load(acc + g * d + i) * vinv).store(o + i);
        for (; i < d; ++i) o[i] = from_f32<Q>(acc[g * d + i] * inv);
      }
    }
  }
};
