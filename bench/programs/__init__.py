"""The SGLang paper's program workloads (arXiv 2312.07104, section 6) as sgnb programs, scaled for a small CPU.

Each workload is one module exposing `WORKLOAD` (a `Workload`); `runner` times them on sgnb with the radix
cache, on sgnb without it, and as plain transformers programs. Run: `.venv/bin/python -m bench.programs --help`.
"""

from __future__ import annotations

from importlib import import_module

from bench.programs.workload import Workload

# command-line name -> module, in the order of the paper's figure
WORKLOAD_MODULES = {
    "mmlu": "bench.programs.mmlu",
    "hellaswag": "bench.programs.hellaswag",
    "tree_of_thought": "bench.programs.tree_of_thought",
    "skeleton_of_thought": "bench.programs.skeleton_of_thought",
    "llm_judge": "bench.programs.llm_judge",
    "multi_turn_chat": "bench.programs.multi_turn_chat",
    "json_extraction": "bench.programs.json_extraction",
}


def load_workload(name: str) -> Workload:
    """The workload called `name` (a key of WORKLOAD_MODULES)."""
    module = WORKLOAD_MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOAD_MODULES)}")
    return import_module(module).WORKLOAD
