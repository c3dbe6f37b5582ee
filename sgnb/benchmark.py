"""`sgnb bench`: offline throughput of the in-process engine on synthetic prompts with a shared prefix."""

from __future__ import annotations

import random
import time


def offline_throughput(model: str, *, dtype: str = "float32", device: str = "cpu", num_prompts: int = 32,
                       shared_prefix_len: int = 256, input_len: int = 32, output_len: int = 32,
                       radix_cache: bool = True, seed: int = 0) -> dict:
    """Run `num_prompts` greedy requests (prefix + distinct tail, `output_len` tokens each) as one batch."""
    if min(num_prompts, input_len, output_len) <= 0 or shared_prefix_len < 0:
        raise ValueError("num_prompts, input_len and output_len must be positive; shared_prefix_len >= 0")
    from sgnb.engine import Engine

    rng = random.Random(seed)
    with Engine(model, dtype=dtype, device=device, radix_cache=radix_cache) as engine:
        vocab = engine.model_config.vocab_size
        prefix = [rng.randrange(100, vocab) for _ in range(shared_prefix_len)]
        prompts = [prefix + [rng.randrange(100, vocab) for _ in range(input_len)] for _ in range(num_prompts)]
        engine.generate(input_ids=prompts[0][:8], sampling_params={"max_new_tokens": 2})    # warm-up
        engine.flush_cache()
        t0 = time.perf_counter()
        results = engine.generate(input_ids=prompts, sampling_params={
            "max_new_tokens": output_len, "temperature": 0, "ignore_eos": True})
        elapsed = time.perf_counter() - t0
        stats = engine.stats()
        engine.check_integrity()
    num_out = sum(r["meta_info"]["completion_tokens"] for r in results)
    num_in = sum(len(p) for p in prompts)
    return {
        "requests": num_prompts,
        "input_tokens": num_in,
        "output_tokens": num_out,
        "seconds": elapsed,
        "requests_per_s": num_prompts / elapsed,
        "output_tokens_per_s": num_out / elapsed,
        "total_tokens_per_s": (num_in + num_out) / elapsed,
        "cache_hit_rate": stats["cache_hit_rate"],
        "prefill_tokens_computed": stats["num_prefill_tokens"],
    }
