// The vector bodies of the packed 4/8-bit matmul, written once over a traits type V (quant_gemm.cpp).
// quant_gemm.cpp includes this file inside a `#pragma GCC target` region per ISA, each time in its own
// namespace with its own V: Avx512 (16 fp32 lanes: one lane = one output row of a 16-row tile) or Avx2
// (8 lanes: a tile is two sub-tiles of 8 rows). Packed layout: sgnb/kernels/quant_weights.py.
//
// V provides: kLanes; F (fp32 vector), I (int vector); zero, set1, fma, mul, cvt (int32 -> fp32),
// u8_pairs / i8_pairs (2 * kLanes bytes -> kLanes 32-bit lanes: byte 2i in the low 16 bits, byte 2i+1 in the
// high 16 bits, zero / sign extended), and_, srli, srai, slli, halves (kLanes fp16 -> fp32), store, store_bf16
// (round to nearest even).

// fp32 activation rows x [rows, ld].
struct ActF32 {
  const float* x;
  int64_t ld;
  ActF32 rows_from(int64_t r) const { return {x + r * ld, ld}; }
};

// Σ_k q[row, k] x[r, k] over one block for rows lane..lane+kLanes of a tile, in chains(R) partial sums per
// activation row (independent FMA chains; a chunk feeds 4 (4-bit) or 2 (8-bit) of them, the next chunk the next).
template <int R>
inline void block_sums(QType qtype, const uint8_t* q, int h, const ActF32& a, int64_t col0,
                       typename V::F (&s)[R][chains(R)]) {
  constexpr int C = chains(R);
  using F = typename V::F;
  const float* x = a.x + col0;
  const int64_t ldx = a.ld;
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) s[r][j] = V::zero();
  if (qtype == QType::kQ8_0) {
    for (int c = 0; c < 16; ++c) {
      auto v = V::i8_pairs(q + c * 32 + h * 2 * V::kLanes);
      F q0 = V::cvt(V::srai(V::slli(v, 16), 16)), q1 = V::cvt(V::srai(v, 16));
      const int j = (c % (C / 2)) * 2;
      for (int r = 0; r < R; ++r) {
        s[r][j] = V::fma(q0, V::set1(x[r * ldx + 2 * c]), s[r][j]);
        s[r][j + 1] = V::fma(q1, V::set1(x[r * ldx + 2 * c + 1]), s[r][j + 1]);
      }
    }
    return;
  }
  for (int c = 0; c < 8; ++c) {
    auto v = V::u8_pairs(q + c * 32 + h * 2 * V::kLanes);
    F q0 = V::cvt(V::and_(v, 0x0F)), q1 = V::cvt(V::and_(V::srli(v, 16), 0x0F));
    F q2 = V::cvt(V::and_(V::srli(v, 4), 0x0F)), q3 = V::cvt(V::srli(v, 20));
    const int j = (c % (C / 4)) * 4;
    for (int r = 0; r < R; ++r) {
      const float* xr = x + r * ldx + 2 * c;
      s[r][j] = V::fma(q0, V::set1(xr[0]), s[r][j]);
      s[r][j + 1] = V::fma(q1, V::set1(xr[1]), s[r][j + 1]);
      s[r][j + 2] = V::fma(q2, V::set1(xr[16]), s[r][j + 2]);
      s[r][j + 3] = V::fma(q3, V::set1(xr[17]), s[r][j + 3]);
    }
  }
}

// y[r, row] = Σ_blocks d[row] * Σ q x + m[row] * Σ x, for R activation rows and one (sub-)tile:
// a: R activation rows,
// xsum [R, ld_xsum] (Σ x per block), y [R, ldy] written for the `valid` rows of the lanes.
template <int R>
inline void gemv_subtile(const PackedView& w, int64_t t, int h, const ActF32& a, const float* xsum,
                         int64_t ld_xsum, float* y, int64_t ldy, const float* bias, int valid) {
  using F = typename V::F;
  F acc[R];
  for (int r = 0; r < R; ++r) acc[r] = V::zero();
  const int64_t nb = w.num_blocks;
  const uint8_t* q = w.qs + t * nb * w.quant_bytes;
  const at::Half* d = w.scales + t * nb * kTile + h * V::kLanes;
  const at::Half* m = w.mins ? w.mins + t * nb * kTile + h * V::kLanes : nullptr;
  for (int64_t b = 0; b < nb; ++b) {
    F s[R][chains(R)];
    block_sums<R>(w.qtype, q + b * w.quant_bytes, h, a, b * kBlock, s);
    F dv = V::halves(d + b * kTile);
    F mv = m ? V::halves(m + b * kTile) : V::mul(dv, V::set1(-8.0f));   // Q4_0: w = d q - 8 d
    for (int r = 0; r < R; ++r) {
      for (int j = chains(R) / 2; j >= 1; j /= 2)          // pairwise: 8 -> 4 -> 2 -> 1 chains
        for (int i = 0; i < j; ++i) s[r][i] = V::add(s[r][i], s[r][i + j]);
      acc[r] = V::fma(dv, s[r][0], acc[r]);
      if (w.qtype != QType::kQ8_0) acc[r] = V::fma(mv, V::set1(xsum[r * ld_xsum + b]), acc[r]);
    }
  }
  alignas(64) float lanes[V::kLanes];
  for (int r = 0; r < R; ++r) {
    V::store(lanes, acc[r]);
    for (int i = 0; i < valid; ++i) y[r * ldy + i] = lanes[i] + (bias ? bias[i] : 0.0f);
  }
}

// The GEMV y = x W.T (+ bias), all rows, for tiles [tile_begin, tile_end): each tile's weights stay in L1
// while the activation rows pass over them, four at a time.
inline void gemv_tiles(const PackedView& w, const ActF32& a, const float* xsum, int64_t num_rows, float* y,
                       int64_t out_features, const float* bias, int64_t tile_begin, int64_t tile_end) {
  const int64_t nb = w.num_blocks;
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    for (int h = 0; h < kTile / V::kLanes; ++h) {
      const int64_t row0 = t * kTile + h * V::kLanes;
      const int valid = static_cast<int>(std::min<int64_t>(V::kLanes, out_features - row0));
      if (valid <= 0) break;
      const float* b = bias ? bias + row0 : nullptr;
      int64_t r = 0;
      for (; r + 4 <= num_rows; r += 4)
        gemv_subtile<4>(w, t, h, a.rows_from(r), xsum + r * nb, nb, y + r * out_features + row0, out_features,
                        b, valid);
      const int rest = static_cast<int>(num_rows - r);
      float* yr = y + r * out_features + row0;
      if (rest == 3) gemv_subtile<3>(w, t, h, a.rows_from(r), xsum + r * nb, nb, yr, out_features, b, valid);
      if (rest == 2) gemv_subtile<2>(w, t, h, a.rows_from(r), xsum + r * nb, nb, yr, out_features, b, valid);
      if (rest == 1) gemv_subtile<1>(w, t, h, a.rows_from(r), xsum + r * nb, nb, yr, out_features, b, valid);
    }
  }
}

inline void store_out(float* p, typename V::F v) { V::store(p, v); }
inline void store_out(at::BFloat16* p, typename V::F v) { V::store_bf16(p, v); }

// Dequantize tiles [tile_begin, tile_end) into wt [K, ldw] (transposed: column (t - tile_begin) * 16 + row),
// fp32 or bf16 (round to nearest even, as torch casts).
template <class Out>
inline void dequant_tiles(const PackedView& w, int64_t tile_begin, int64_t tile_end, Out* wt, int64_t ldw) {
  using F = typename V::F;
  const int64_t nb = w.num_blocks;
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    for (int h = 0; h < kTile / V::kLanes; ++h) {
      Out* col = wt + (t - tile_begin) * kTile + h * V::kLanes;
      const at::Half* d = w.scales + t * nb * kTile + h * V::kLanes;
      const at::Half* m = w.mins ? w.mins + t * nb * kTile + h * V::kLanes : nullptr;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* q = w.qs + (t * nb + b) * w.quant_bytes;
        Out* out = col + b * kBlock * ldw;
        F dv = V::halves(d + b * kTile);
        if (w.qtype == QType::kQ8_0) {
          for (int c = 0; c < 16; ++c) {
            auto v = V::i8_pairs(q + c * 32 + h * 2 * V::kLanes);
            store_out(out + (2 * c) * ldw, V::mul(dv, V::cvt(V::srai(V::slli(v, 16), 16))));
            store_out(out + (2 * c + 1) * ldw, V::mul(dv, V::cvt(V::srai(v, 16))));
          }
          continue;
        }
        F mv = m ? V::halves(m + b * kTile) : V::mul(dv, V::set1(-8.0f));
        for (int c = 0; c < 8; ++c) {
          auto v = V::u8_pairs(q + c * 32 + h * 2 * V::kLanes);
          store_out(out + (2 * c) * ldw, V::fma(dv, V::cvt(V::and_(v, 0x0F)), mv));
          store_out(out + (2 * c + 1) * ldw, V::fma(dv, V::cvt(V::and_(V::srli(v, 16), 0x0F)), mv));
          store_out(out + (2 * c + 16) * ldw, V::fma(dv, V::cvt(V::and_(V::srli(v, 4), 0x0F)), mv));
          store_out(out + (2 * c + 17) * ldw, V::fma(dv, V::cvt(V::srli(v, 20)), mv));
        }
      }
    }
  }
}
