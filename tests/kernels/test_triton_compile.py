"""The Triton kernels compile ahead of time to sm_90 machine code (no GPU needed: triton ships ptxas).

The interpreter tests check the arithmetic; this checks that the GPU compiler accepts the same
kernels in fp16 and bf16, with the block sizes the wrappers choose for SmolLM2's shape. It runs in
a subprocess because this test directory sets TRITON_INTERPRET=1, under which `@triton.jit`
builds interpreter objects that the compiler cannot lower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

NUM_HEADS, NUM_KV_HEADS, HEAD_DIM = 9, 3, 64     # SmolLM2-135M


def _compile_all() -> dict[str, object]:
    """Compile every kernel; returns {name: {"ptx_target": ..., "cubin_bytes": ...} | "skip: ..."}."""
    import triton
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        return {"skip": f"this triton has no ASTSource / GPUTarget: {exc}"}
    from sgnb.kernels import triton_decode, triton_extend, triton_kv_store

    def build(kernel, pointers: dict[str, str], scalars: dict[str, str], constexprs: dict) -> dict:
        signature = {name: "constexpr" if name in constexprs else pointers.get(name) or scalars.get(name, "i32")
                     for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        ptx = compiled.asm["ptx"]
        target = next((line.split()[1] for line in ptx.splitlines() if line.startswith(".target")), "")
        return {"ptx_target": target, "cubin_bytes": len(compiled.asm["cubin"])}

    group = NUM_HEADS // NUM_KV_HEADS
    block_m, block_n, _ = triton_extend._block_sizes(HEAD_DIM)
    results: dict[str, object] = {}
    for dtype in ("fp16", "bf16"):
        results[f"extend-{dtype}"] = build(
            triton_extend._extend_kernel,
            {**{n: f"*{dtype}" for n in ("q", "k_extend", "v_extend", "k_buffer", "v_buffer", "o")},
             **{n: "*i64" for n in ("qo_indptr", "kv_indptr", "kv_indices")}},
            {"qk_scale": "fp32"},
            dict(GROUP=group, HEAD_DIM=HEAD_DIM, BLOCK_D=HEAD_DIM, BLOCK_M=block_m, BLOCK_N=block_n,
                 INPUT_PRECISION="tf32"))
        results[f"decode-stage1-{dtype}"] = build(
            triton_decode._decode_stage1_kernel,
            {**{n: f"*{dtype}" for n in ("q", "k_buffer", "v_buffer")},
             "kv_indptr": "*i32", "kv_indices": "*i32", "mid_o": "*fp32", "mid_lse": "*fp32"},
            {"qk_scale": "fp32"},
            dict(GROUP=group, HEAD_DIM=HEAD_DIM, BLOCK_D=HEAD_DIM, BLOCK_H=16, BLOCK_N=64,
                 INPUT_PRECISION="tf32"))
        results[f"decode-stage2-{dtype}"] = build(
            triton_decode._decode_stage2_kernel,
            {"mid_o": "*fp32", "mid_lse": "*fp32", "o": f"*{dtype}", "kv_indptr": "*i32"},
            {}, dict(HEAD_DIM=HEAD_DIM, BLOCK_D=HEAD_DIM))
        results[f"store-{dtype}"] = build(
            triton_kv_store._store_kv_kernel,
            {"k_buffer": f"*{dtype}", "v_buffer": f"*{dtype}", "k": "*fp32", "v": "*fp32", "loc": "*i64"},
            {}, dict(NUM_KV_HEADS=NUM_KV_HEADS, HEAD_DIM=HEAD_DIM, BLOCK_T=16, BLOCK_R=256))
    return results


def test_every_kernel_compiles_to_sm90_cubin_in_fp16_and_bf16() -> None:
    import pytest
    pytest.importorskip("triton", reason="triton is not installed; the Triton kernel tests need it")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"compile subprocess failed:\n{proc.stderr[-4000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in results:
        pytest.skip(results["skip"])
    assert len(results) == 8
    for name, result in results.items():
        assert result["ptx_target"].startswith("sm_90"), name     # sm_90 or sm_90a
        assert result["cubin_bytes"] > 0, name


if __name__ == "__main__":
    print(json.dumps(_compile_all()))
