"""The whole engine on the Triton backend (through the Triton interpreter, fp32, CPU) gives the torch backend's
greedy tokens: prefill, a cached extend, decode and a batch of requests forking from one shared prefix.

`@triton.jit` chooses interpreter or compiler when a kernel module is first imported, so the Triton run is a
subprocess started with TRITON_INTERPRET=1 (this file run as a script); the torch run is in-process, and
the comparison is here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GREEDY = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}
PROMPT = [5, 17, 300, 4000, 21, 9, 611, 87, 1200, 33, 40, 2024]          # 12 tokens
SHARED = PROMPT[:8]


def run_scenario(folder: str, attention_backend: str) -> dict[str, list]:
    """Greedy outputs (ids, logprobs, cached tokens) of each step, on a fresh engine; ends with check_integrity."""
    from sgnb.engine import Engine

    steps: dict[str, list] = {}
    with Engine(folder, dtype="float32", max_total_tokens=256, attention_backend=attention_backend) as engine:
        assert engine.ops.name == attention_backend
        prompts = {
            "prefill": [PROMPT],                                      # nothing cached: extend from 0, then decode
            "cached_extend": [SHARED + [77, 901, 64]],                # 8 cached tokens, a 3-token extend
            "fork": [SHARED + tail for tail in ([12], [450, 3], [7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7])],
        }
        for step, input_ids in prompts.items():
            out = engine.generate(input_ids=input_ids, sampling_params=GREEDY, return_logprob=True)
            steps[step] = [{"output_ids": r["output_ids"], "cached_tokens": r["meta_info"]["cached_tokens"],
                            "logprobs": [lp for lp, _, _ in r["meta_info"]["output_token_logprobs"]]}
                           for r in out]
        engine.check_integrity()
    return steps


def test_triton_backend_gives_the_torch_backends_greedy_tokens_through_the_engine(tmp_path, smollm2_path):
    pytest.importorskip("triton")
    from tests.conftest import make_tiny_model

    folder = str(make_tiny_model(tmp_path / "tiny", smollm2_path))
    torch_steps = run_scenario(folder, "torch")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, __file__, folder], env=env, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]
    triton_steps = json.loads(proc.stdout.strip().splitlines()[-1])

    assert triton_steps.keys() == torch_steps.keys()
    for step, torch_results in torch_steps.items():
        for ours, ref in zip(triton_steps[step], torch_results, strict=True):
            assert ours["output_ids"] == ref["output_ids"], step
            assert len(ref["output_ids"]) == GREEDY["max_new_tokens"]
            assert ours["cached_tokens"] == ref["cached_tokens"], step
            assert ours["logprobs"] == pytest.approx(ref["logprobs"], abs=1e-4), step
    # the steps exercise what they claim: the second request and the fork reuse the shared prefix
    assert torch_steps["prefill"][0]["cached_tokens"] == 0
    assert torch_steps["cached_extend"][0]["cached_tokens"] >= len(SHARED)
    assert all(r["cached_tokens"] >= len(SHARED) for r in torch_steps["fork"])


if __name__ == "__main__":
    print(json.dumps(run_scenario(sys.argv[1], "triton")))
