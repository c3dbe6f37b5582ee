"""GPU checks and benchmarks of the attention kernels (needs CUDA; exits with a message otherwise).

    python bench/gpu_kernels.py [--skip-engine]

1. Correctness in fp16 and bf16: the kernel tests' cases (GQA, ragged batches, prefixes 0..N,
   shuffled page tables, several KV splits) for Triton (and flash when it imports) against the torch
   reference computed in fp32 on the same rounded inputs.
2. Decode attention, batch 64 x 2k context, against the memory-bandwidth bound: bytes of K+V (and
   slot ids) read / peak bandwidth of a large device-to-device copy timed in this run.
3. Extend attention against torch SDPA over KV gathered from the pool (and over dense KV).
4. End to end: Engine generation with the torch vs the Triton backend (skipped with a message when
   the engine or its options do not exist yet).
Every figure is printed next to its baseline measured in the same run, as a ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "kernels"))

from paged_cases import make_decode_case, make_extend_case  # noqa: E402

from sgnb.kernels import get_attention_ops, torch_ref  # noqa: E402

TOLERANCES = {torch.float16: 3e-3, torch.bfloat16: 3e-2, torch.float32: 2e-5}   # max abs error


def to_device(case, device: str):
    return dataclasses.replace(case, **{f.name: getattr(case, f.name).to(device)
                                        for f in dataclasses.fields(case)
                                        if isinstance(getattr(case, f.name), torch.Tensor)})


def as_float32(case):
    return dataclasses.replace(case, **{f.name: getattr(case, f.name).float()
                                        for f in dataclasses.fields(case)
                                        if isinstance(getattr(case, f.name), torch.Tensor)
                                        and getattr(case, f.name).is_floating_point()})


def check_kernels(ops_list, device: str, dtypes) -> bool:
    """Run the test cases through every backend in `ops_list`; prints one line per comparison."""
    extend_cases = [([0, 1, 150], [70, 9, 3], 4, 2, 32), ([0, 1, 150], [70, 9, 3], 4, 1, 32),
                    (list(range(9)) + [63, 64, 65, 129], [1 + i * 5 % 11 for i in range(13)], 2, 1, 64),
                    ([12, 0, 33], [5, 17, 2], 9, 3, 64), ([512, 1000], [300, 64], 32, 8, 128)]
    decode_cases = [([1, 7, 64, 65, 200], 4, 2, 32), ([1, 7, 64, 65, 200], 4, 1, 32),
                    ([3, 90, 2048], 9, 3, 64), ([100] * 16 + [4000], 32, 8, 128)]
    ok = True
    for dtype in dtypes:
        tol = TOLERANCES[dtype]
        for ops in ops_list:
            if ops.name == "flash" and dtype == torch.float32:
                continue
            worst = 0.0
            for seed, (prefix_lens, extend_lens, h, hkv, d) in enumerate(extend_cases):
                case = to_device(make_extend_case(prefix_lens, extend_lens, h, hkv, d, seed=seed, dtype=dtype), device)
                expected = torch_ref.extend_attention(*as_float32(case).args())
                worst = max(worst, (ops.extend_attention(*case.args()).float() - expected).abs().max().item())
            for splits in (None, 1, 7):
                for seed, (seq_lens, h, hkv, d) in enumerate(decode_cases):
                    case = to_device(make_decode_case(seq_lens, h, hkv, d, seed=seed, dtype=dtype), device)
                    expected = torch_ref.decode_attention(*as_float32(case).args())
                    kwargs = {"num_kv_splits": splits} if ops.name == "triton" and splits else {}
                    out = ops.decode_attention(*case.args(), **kwargs)
                    worst = max(worst, (out.float() - expected).abs().max().item())
            k_buffer, v_buffer = (torch.zeros(300, 3, 64, dtype=dtype, device=device) for _ in range(2))
            loc = torch.randperm(299, device=device)[:100] + 1
            k, v = torch.randn(100, 3, 64, device=device), torch.randn(100, 3, 64, device=device)
            ops.store_kv(k_buffer, v_buffer, loc, k, v)
            store_exact = torch.equal(k_buffer[loc], k.to(dtype)) and torch.equal(v_buffer[loc], v.to(dtype))
            passed = worst <= tol and store_exact
            ok &= passed
            print(f"  {ops.name:6s} {str(dtype):15s} max |err| {worst:.2e} (tol {tol:.0e}), "
                  f"store exact: {store_exact}  {'PASS' if passed else 'FAIL'}")
    return ok


def time_ms(fn) -> float:
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def peak_bandwidth_gbs(device: str) -> float:
    src = torch.empty(2 << 30, dtype=torch.uint8, device=device)       # 2 GiB, far beyond L2
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    return 2 * src.numel() / (ms * 1e-3) / 1e9                          # read + write


def bench_decode(ops_list, device: str, bandwidth: float, batch: int = 64, context: int = 2048) -> None:
    for num_heads, num_kv_heads, head_dim in ((32, 8, 128), (9, 3, 64)):
        dtype = torch.float16
        num_slots = batch * context + 1
        k_buffer = torch.randn(num_slots, num_kv_heads, head_dim, dtype=dtype, device=device)
        v_buffer = torch.randn_like(k_buffer)
        kv_indices = (torch.randperm(num_slots - 1, device=device) + 1).to(torch.int32)   # shuffled pages
        kv_indptr = torch.arange(batch + 1, device=device, dtype=torch.int32) * context
        q = torch.randn(batch, num_heads, head_dim, dtype=dtype, device=device)
        scale = head_dim ** -0.5
        kv_bytes = 2 * batch * context * num_kv_heads * head_dim * k_buffer.element_size()
        bound_ms = (kv_bytes + kv_indices.numel() * 4) / (bandwidth * 1e9) * 1e3
        print(f"  heads {num_heads}/{num_kv_heads} x {head_dim}, batch {batch}, context {context}: "
              f"K+V {kv_bytes / 2**20:.0f} MiB, bandwidth bound {bound_ms * 1e3:.1f} us")
        for ops in ops_list:
            ms = time_ms(lambda: ops.decode_attention(q, k_buffer, v_buffer, kv_indptr, kv_indices, scale))
            print(f"    {ops.name:6s} {ms * 1e3:9.1f} us   {ms / bound_ms:5.2f}x the bound "
                  f"({(kv_bytes / (ms * 1e-3)) / 1e9:.0f} GB/s of K+V)")


def bench_extend(ops_list, device: str, batch: int = 8, prefix_len: int = 1024, extend_len: int = 512) -> None:
    num_heads, num_kv_heads, head_dim, dtype = 32, 8, 128, torch.float16
    num_slots = batch * prefix_len + 1
    k_buffer = torch.randn(num_slots, num_kv_heads, head_dim, dtype=dtype, device=device)
    v_buffer = torch.randn_like(k_buffer)
    kv_indices = torch.randperm(num_slots - 1, device=device) + 1
    kv_indptr = torch.arange(batch + 1, device=device) * prefix_len
    qo_indptr = torch.arange(batch + 1, device=device) * extend_len
    q = torch.randn(batch * extend_len, num_heads, head_dim, dtype=dtype, device=device)
    k_extend = torch.randn(batch * extend_len, num_kv_heads, head_dim, dtype=dtype, device=device)
    v_extend = torch.randn_like(k_extend)
    scale = head_dim ** -0.5
    rows = torch.arange(extend_len, device=device)[:, None] + prefix_len
    mask = torch.arange(prefix_len + extend_len, device=device)[None, :] <= rows   # [extend, prefix + extend]
    group = num_heads // num_kv_heads

    def dense(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # k, v: [batch, prefix + extend, num_kv_heads, head_dim]
        qb = q.view(batch, extend_len, num_heads, head_dim).transpose(1, 2)
        kb = k.transpose(1, 2).repeat_interleave(group, dim=1)
        vb = v.transpose(1, 2).repeat_interleave(group, dim=1)
        return F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale)

    def gathered_kv() -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch, prefix_len, num_kv_heads, head_dim)
        ext = (batch, extend_len, num_kv_heads, head_dim)
        k = torch.cat([k_buffer[kv_indices].view(shape), k_extend.view(ext)], dim=1)
        v = torch.cat([v_buffer[kv_indices].view(shape), v_extend.view(ext)], dim=1)
        return k, v

    k_dense, v_dense = gathered_kv()
    sdpa_gather_ms = time_ms(lambda: dense(*gathered_kv()))
    sdpa_ms = time_ms(lambda: dense(k_dense, v_dense))
    print(f"  batch {batch}, prefix {prefix_len}, extend {extend_len}, heads {num_heads}/{num_kv_heads} x {head_dim}")
    print(f"    sdpa over gathered KV (gather included) {sdpa_gather_ms * 1e3:9.1f} us")
    print(f"    sdpa over dense KV (no gather)          {sdpa_ms * 1e3:9.1f} us")
    for ops in ops_list:
        if ops.name == "torch":
            continue
        ms = time_ms(lambda: ops.extend_attention(q, k_extend, v_extend, k_buffer, v_buffer,
                                                  qo_indptr, kv_indptr, kv_indices, scale))
        print(f"    {ops.name:6s} {ms * 1e3:9.1f} us   {ms / sdpa_gather_ms:5.2f}x sdpa+gather, "
              f"{ms / sdpa_ms:5.2f}x sdpa on dense KV")


def bench_engine(backends: list[str]) -> None:
    try:
        from sgnb.engine import Engine
    except ImportError as exc:
        print(f"  skipped: sgnb.engine.Engine is not importable yet ({exc})")
        return
    prompts = [f"Write a short story about the number {i}." for i in range(32)]
    params = {"max_new_tokens": 128, "temperature": 0.0, "ignore_eos": True}
    variants = [(b, {}) for b in backends] + [("triton", {"cuda_graph": True})]
    baseline, baseline_label = None, ""
    for backend, extra in variants:
        label = backend + (" + cuda graph" if extra else "")
        try:
            engine = Engine("smollm2-135m", device="cuda", dtype="float16", attention_backend=backend, **extra)
        except TypeError as exc:
            print(f"  {label}: skipped, the engine does not take these options yet ({exc})")
            continue
        try:
            engine.generate(prompt=prompts[:2], sampling_params={**params, "max_new_tokens": 8})   # warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            outs = engine.generate(prompt=prompts, sampling_params=params)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        finally:
            engine.shutdown()
        tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
        rate = tokens / seconds
        if baseline is None:
            baseline, baseline_label = rate, label
        print(f"  {label:20s} {rate:9.0f} tok/s ({len(prompts)} requests x {params['max_new_tokens']} tokens), "
              f"{rate / baseline:4.2f}x {baseline_label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-engine", action="store_true", help="skip the end-to-end engine run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu_kernels.py needs a CUDA GPU; torch.cuda.is_available() is False here "
                         "(the CPU tests in tests/kernels cover the kernels through the Triton interpreter)")
    if os.environ.get("TRITON_INTERPRET"):
        raise SystemExit("unset TRITON_INTERPRET: this benchmark compiles the kernels for the GPU")
    device = "cuda"
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    ops_list = [get_attention_ops("torch", device), get_attention_ops("triton", device)]
    try:
        ops_list.append(get_attention_ops("flash", device))
    except ValueError as exc:
        print(f"flash backend not compared: {exc}")

    print("\n[1] kernels vs torch reference (fp32 math on the same rounded inputs)")
    ok = check_kernels(ops_list[1:], device, (torch.float16, torch.bfloat16, torch.float32))
    bandwidth = peak_bandwidth_gbs(device)
    print(f"\n[2] decode attention vs the bandwidth bound (device-to-device copy: {bandwidth:.0f} GB/s)")
    bench_decode(ops_list, device, bandwidth)
    print("\n[3] extend attention vs torch SDPA")
    bench_extend(ops_list, device)
    if not args.skip_engine:
        print("\n[4] end-to-end engine generation")
        bench_engine(["torch", "triton"])
    if not ok:
        raise SystemExit("some kernel comparisons FAILED (see [1])")


if __name__ == "__main__":
    main()
