"""The torch reference against dense attention written out with a materialised mask, in float64."""

from __future__ import annotations

import pytest
import torch
from paged_cases import make_decode_case, make_extend_case, shuffled_slots

from sgnb.kernels import torch_ref


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor,
                    sm_scale: float) -> torch.Tensor:
    """q [n, num_heads, d], k/v [m, num_kv_heads, d], visible [n, m] bool -> [n, num_heads, d]."""
    num_heads, num_kv_heads = q.shape[1], k.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    for head in range(num_heads):
        kv_head = head // (num_heads // num_kv_heads)
        scores = q[:, head].double() @ k[:, kv_head].double().T * sm_scale     # [n, m]
        scores = scores.masked_fill(~visible, float("-inf"))
        out[:, head] = torch.softmax(scores, dim=-1) @ v[:, kv_head].double()
    return out


@pytest.mark.parametrize("prefix_lens, extend_lens", [
    ([0, 3, 17, 0, 40], [5, 1, 9, 0, 12]),            # all short: one padded SDPA call
    ([5, 0, 30, 2], [1, 70, 1, 3]),                    # a prefill chunk beside short ones: both paths
    ([12], [4]),                                       # a single request: computed alone
    ([0, 0, 0], [1, 1, 1]),                            # no prefix anywhere
], ids=["short", "mixed", "single", "no-prefix"])
def test_extend_reference_matches_dense_masked_attention(prefix_lens: list[int], extend_lens: list[int]) -> None:
    case = make_extend_case(prefix_lens, extend_lens, num_heads=6, num_kv_heads=2, head_dim=16, seed=1,
                            index_dtype=torch.int32)
    out = torch_ref.extend_attention(*case.args())
    q0 = p0 = 0
    for prefix_len, extend_len in zip(prefix_lens, extend_lens):
        slots = case.kv_indices[p0:p0 + prefix_len]
        k = torch.cat([case.k_buffer[slots], case.k_extend[q0:q0 + extend_len]])
        v = torch.cat([case.v_buffer[slots], case.v_extend[q0:q0 + extend_len]])
        visible = torch.zeros(extend_len, prefix_len + extend_len, dtype=torch.bool)
        for j in range(extend_len):
            visible[j, :prefix_len + j + 1] = True
        expected = dense_attention(case.q[q0:q0 + extend_len], k, v, visible, case.sm_scale)
        torch.testing.assert_close(out[q0:q0 + extend_len].double(), expected, atol=1e-5, rtol=1e-5)
        q0, p0 = q0 + extend_len, p0 + prefix_len


def test_decode_reference_matches_dense_attention() -> None:
    seq_lens = [1, 9, 33, 4]
    case = make_decode_case(seq_lens, num_heads=4, num_kv_heads=1, head_dim=8, seed=2)
    out = torch_ref.decode_attention(*case.args())
    start = 0
    for i, seq_len in enumerate(seq_lens):
        slots = case.kv_indices[start:start + seq_len]
        visible = torch.ones(1, seq_len, dtype=torch.bool)
        expected = dense_attention(case.q[i:i + 1], case.k_buffer[slots], case.v_buffer[slots], visible,
                                   case.sm_scale)
        torch.testing.assert_close(out[i:i + 1].double(), expected, atol=1e-5, rtol=1e-5)
        start += seq_len


def test_store_kv_reference_writes_only_the_given_slots() -> None:
    gen = torch.Generator().manual_seed(3)
    k_buffer, v_buffer = torch.zeros(20, 2, 4), torch.zeros(20, 2, 4)
    loc = shuffled_slots(6, 20, gen)
    k, v = torch.randn(6, 2, 4, generator=gen), torch.randn(6, 2, 4, generator=gen)
    torch_ref.store_kv(k_buffer, v_buffer, loc, k, v)
    torch.testing.assert_close(k_buffer[loc], k)
    torch.testing.assert_close(v_buffer[loc], v)
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[loc] = False
    assert k_buffer[untouched].abs().sum() == 0 and v_buffer[untouched].abs().sum() == 0
