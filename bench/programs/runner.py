"""Times each workload on three systems in one process and prints the ratios.

Systems, all greedy, same model and dtype:
- `sgnb`: `run_batch` on an Engine with the radix cache (flushed before every timed run);
- `sgnb, radix cache off`: the same on a second Engine built with `radix_cache=False`;
- `transformers`: the workload's plain Python version (`HFProgram`), one program and one call at a time.
The two sgnb systems alternate within each repeat so machine noise hits both; figures are medians.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.programs.hf_program import HFProgram
from bench.programs.workload import Workload

SGNB, NO_CACHE, HF = "sgnb", "sgnb, radix cache off", "transformers"


@dataclass(slots=True)
class Run:
    """One timed run of a workload on one system."""

    seconds: float
    num_programs: int
    num_prefill_tokens: int            # prompt tokens the model computed (sgnb: cache misses, forced text too)
    num_output_tokens: int             # tokens decoded (sgnb: sampled + forced by jump-forward)
    hit_rate: float | None = None      # sgnb: matched / queried prompt tokens during this run
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def programs_per_s(self) -> float:
        return self.num_programs / self.seconds


@dataclass(slots=True)
class SystemResult:
    runs: list[Run]

    @property
    def programs_per_s(self) -> float:
        return statistics.median(r.programs_per_s for r in self.runs)

    @property
    def num_programs(self) -> int:
        return self.runs[0].num_programs

    @property
    def prefill_per_program(self) -> float:
        return statistics.median(r.num_prefill_tokens / r.num_programs for r in self.runs)

    @property
    def output_per_program(self) -> float:
        return statistics.median(r.num_output_tokens / r.num_programs for r in self.runs)

    @property
    def hit_rate(self) -> float | None:
        rates = [r.hit_rate for r in self.runs if r.hit_rate is not None]
        return statistics.median(rates) if rates else None


@dataclass(slots=True)
class WorkloadResult:
    workload: Workload
    systems: dict[str, SystemResult]

    def ratio(self, other: str) -> float | None:
        if SGNB not in self.systems or other not in self.systems:
            return None
        return self.systems[SGNB].programs_per_s / self.systems[other].programs_per_s


def sgnb_run(workload: Workload, backend: Any, args: list[dict[str, Any]], num_threads: int | str = "auto") -> Run:
    """One timed `run_batch` of the workload on a freshly flushed engine; outputs validated."""
    engine = backend.engine
    if not backend.flush_cache():
        raise RuntimeError("the engine did not go idle, so its cache could not be flushed")
    before = engine.stats()
    t0 = time.perf_counter()
    states = workload.program.run_batch(args, backend=backend, temperature=0, num_threads=num_threads)
    seconds = time.perf_counter() - t0
    after = engine.stats()
    for i, state in enumerate(states):
        if state.error() is not None:
            raise RuntimeError(f"{workload.name} program {i} failed: {state.error()!r}") from state.error()
    outputs = [workload.outputs(state) for state in states]
    delta = {k: after[k] - before[k] for k in ("queried_tokens", "cached_tokens", "num_prefill_tokens",
                                                "num_generated_tokens", "num_forced_tokens")}
    return Run(seconds, len(args), delta["num_prefill_tokens"],
               delta["num_generated_tokens"] + delta["num_forced_tokens"],
               delta["cached_tokens"] / delta["queried_tokens"] if delta["queried_tokens"] else 0.0, outputs)


def hf_run(workload: Workload, hf: HFProgram, args: list[dict[str, Any]]) -> Run:
    """The workload's transformers version, one program after the other."""
    hf.reset_counters()
    t0 = time.perf_counter()
    outputs = [workload.run_hf(hf, **kwargs) for kwargs in args]
    seconds = time.perf_counter() - t0
    return Run(seconds, len(args), hf.num_prompt_tokens, hf.num_generated_tokens, None, outputs)


def spread(items: list, num: int) -> list:
    """`num` items evenly spaced over `items` (a subset that represents the whole batch, e.g. every subject)."""
    if not 1 <= num <= len(items):
        raise ValueError(f"cannot pick {num} of {len(items)} items")
    return [items[i * len(items) // num] for i in range(num)]


def warm_up(workload: Workload, backends: list[Any], hf: HFProgram | None) -> None:
    """Compile the workload's constraints everywhere, so no timed run pays for a first compile."""
    from sgnb.constrained import TokenVocab, compile_regex

    for regex in workload.regexes:
        for backend in backends:      # what the engine's constraint builder compiles (memory-cached per vocab)
            engine = backend.engine
            compile_regex(regex, TokenVocab.from_tokenizer(engine.tokenizer, eos_token_ids=engine.eos_ids))
        if hf is not None:
            hf.compile(regex)


def measure(workload: Workload, backends: dict[str, Any], hf: HFProgram | None, num_programs: int,
            num_hf_programs: int, repeats: int = 1, hf_repeats: int = 1,
            num_threads: int | str = "auto") -> WorkloadResult:
    """Time `workload` on every given system: `backends` maps SGNB / NO_CACHE to EngineBackends."""
    if repeats < 1 or hf_repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats} and {hf_repeats}")
    args = workload.make_args(num_programs)
    warm_up(workload, list(backends.values()), hf)
    runs: dict[str, list[Run]] = {name: [] for name in backends}
    for _ in range(repeats):
        for name, backend in backends.items():
            runs[name].append(sgnb_run(workload, backend, args, num_threads))
    hf_args = spread(args, num_hf_programs)
    if hf is not None:
        runs[HF] = [hf_run(workload, hf, hf_args) for _ in range(hf_repeats)]
    for name, system_runs in runs.items():
        for run in system_runs:
            for kwargs, out in zip(hf_args if name == HF else args, run.outputs):
                workload.check(kwargs, out, name)
    for backend in backends.values():
        backend.flush_cache()
        backend.engine.check_integrity()
    return WorkloadResult(workload, {name: SystemResult(r) for name, r in runs.items()})


# ------------------------------------------------------------------------------------------------ report
def format_report(results: list[WorkloadResult]) -> str:
    """Two tables: programs/s and ratios; cache hit rate and tokens computed per program."""
    lines = [f"{'workload':31s} {'progs':>9s} {'sgnb':>8s} {'no-cache':>8s} {'transf.':>8s} "
             f"{'sgnb/no-cache':>13s} {'sgnb/transf.':>12s}",
             f"{'':31s} {'(sg/hf)':>9s} {'prog/s':>8s} {'prog/s':>8s} {'prog/s':>8s}"]
    for res in results:
        s = res.systems
        num_hf = s[HF].num_programs if HF in s else 0
        lines.append(f"{res.workload.title:31s} {f'{s[SGNB].num_programs}/{num_hf}':>9s} "
                     f"{_rate(s.get(SGNB)):>8s} {_rate(s.get(NO_CACHE)):>8s} {_rate(s.get(HF)):>8s} "
                     f"{_ratio(res.ratio(NO_CACHE)):>13s} {_ratio(res.ratio(HF)):>12s}")
    ratios = {k: [r.ratio(k) for r in results if r.ratio(k) is not None] for k in (NO_CACHE, HF)}
    if ratios[NO_CACHE] or ratios[HF]:
        lines.append(f"{'geometric mean':31s} {'':9s} {'':8s} {'':8s} {'':8s} "
                     f"{_ratio(_geomean(ratios[NO_CACHE])):>13s} {_ratio(_geomean(ratios[HF])):>12s}")
    lines += ["", f"{'workload':31s} {'hit rate':>8s} {'paper':>7s} {'prefill tok/prog':>28s} "
              f"{'output tok/prog':>16s}",
              f"{'':31s} {'(sgnb)':>8s} {'':7s} {'sgnb / no-cache / transf.':>28s} {'sgnb / transf.':>16s}"]
    for res in results:
        s = res.systems
        hit = s[SGNB].hit_rate
        prefill = " / ".join(_tok(s.get(k), "prefill_per_program") for k in (SGNB, NO_CACHE, HF))
        output = " / ".join(_tok(s.get(k), "output_per_program") for k in (SGNB, HF))
        lines.append(f"{res.workload.title:31s} {'-' if hit is None else f'{hit:.1%}':>8s} "
                     f"{res.workload.paper_hit_rate:>7s} {prefill:>28s} {output:>16s}")
    return "\n".join(lines)


def _rate(system: SystemResult | None) -> str:
    return "-" if system is None else f"{system.programs_per_s:.3f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _tok(system: SystemResult | None, attr: str) -> str:
    return "-" if system is None else f"{getattr(system, attr):.0f}"


def _geomean(values: list[float]) -> float | None:
    return statistics.geometric_mean(values) if values else None


def load_note() -> str:
    """The machine's load average (the benchmark shares its cores with other work)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unavailable"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"
