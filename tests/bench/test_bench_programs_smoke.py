"""Smoke test of bench/programs: every workload at its tiniest size on SmolLM2, on all three systems.

Not a timing test: it checks that each program runs on sgnb (radix cache on and off) and as plain
transformers, that the outputs have the workload's structure, and that the cache figures are sane.
"""

from __future__ import annotations

import pytest

from bench.programs import WORKLOAD_MODULES, load_workload
from bench.programs.runner import HF, NO_CACHE, SGNB, format_report, measure
from bench.programs.workload import MalformedOutput

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SHARED_PREFIX_WORKLOADS = {"hellaswag", "tree_of_thought", "skeleton_of_thought", "llm_judge", "multi_turn_chat",
                           "json_extraction"}    # every program reuses its own (or the batch's) prefix


@pytest.fixture(scope="module")
def backends(engine):
    from sgnb.engine import Engine
    from sgnb.lang.backends.engine_backend import EngineBackend

    no_cache = Engine(str(engine.model_path), dtype="float32", radix_cache=False, kv_cache_gb=0.25)
    yield {SGNB: EngineBackend(engine=engine), NO_CACHE: EngineBackend(engine=no_cache)}
    no_cache.check_integrity()
    no_cache.shutdown()


@pytest.fixture(scope="module")
def hf():
    from bench.programs.hf_program import HFProgram

    return HFProgram("smollm2-135m", "float32")


@pytest.mark.parametrize("name", list(WORKLOAD_MODULES))
def test_workload_runs_on_all_systems_with_valid_outputs(name, backends, hf):
    workload = load_workload(name)
    num, num_hf = workload.sizes(1e-6)
    assert (num, num_hf) == (2, 1)                    # the tiniest size
    result = measure(workload, backends, hf, num, num_hf)   # validates every output, raising MalformedOutput

    assert set(result.systems) == {SGNB, NO_CACHE, HF}
    for system, expected in ((SGNB, num), (NO_CACHE, num), (HF, num_hf)):
        (run,) = result.systems[system].runs
        assert run.num_programs == expected and len(run.outputs) == expected
        assert run.seconds > 0 and run.num_prefill_tokens > 0
    hit = result.systems[SGNB].hit_rate
    assert hit is not None and 0.0 <= hit <= 1.0
    assert result.systems[NO_CACHE].hit_rate == 0.0   # nothing is ever matched without the radix cache
    if name in SHARED_PREFIX_WORKLOADS:
        assert hit > 0.3, f"{name}: sgnb hit rate {hit:.1%}"
        # the cache saves prompt computation: fewer prompt tokens computed than with it off
        assert result.systems[SGNB].prefill_per_program < result.systems[NO_CACHE].prefill_per_program
    for other in (NO_CACHE, HF):
        assert result.ratio(other) > 0
    report = format_report([result])
    assert workload.title in report and f"{hit:.1%}" in report


def test_malformed_outputs_are_reported_with_the_workload_and_system():
    workload = load_workload("json_extraction")
    kwargs = workload.make_args(1)[0]
    with pytest.raises(MalformedOutput, match="json_extraction on transformers: the output is not JSON"):
        workload.check(kwargs, {"json": '{"name": "Quarren"'}, HF)
    workload.check(kwargs, {"json": '{"name":"A","country":"B","founded":"1132","river":"C","known_for":"D"}'}, HF)

