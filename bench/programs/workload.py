"""One benchmark workload: an sgnb program, the same program in plain transformers, its data and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from sgnb.lang.program import SglFunction
    from sgnb.lang.state import ProgramState


class MalformedOutput(ValueError):
    """A program's outputs do not have the structure its workload promises."""


@dataclass(slots=True)
class Workload:
    """A program workload of the SGLang paper (arXiv 2312.07104, section 6), scaled for a small CPU.

    `make_args(n)` gives the keyword arguments of `n` programs, deterministically. `outputs(state)` (sgnb) and
    `run_hf(hf, **kwargs)` (transformers) return the program's outputs as the same plain dict, which
    `validate(kwargs, outputs)` checks structurally (raising MalformedOutput): a 135M model's answers are not
    expected to be right, only well formed.
    """

    name: str                                         # command-line name
    title: str                                        # table label
    program: SglFunction
    make_args: Callable[[int], list[dict[str, Any]]]
    outputs: Callable[[ProgramState], dict[str, Any]]
    run_hf: Callable[..., dict[str, Any]]             # (hf: HFProgram, **kwargs) -> outputs
    validate: Callable[[dict[str, Any], dict[str, Any]], None]
    num_programs: int                                 # programs run by sgnb at --scale 1
    num_hf_programs: int                              # programs timed for transformers at --scale 1
    regexes: tuple[str, ...] = field(default_factory=tuple)  # constraints to compile before timing
    paper_hit_rate: str = "-"                         # the SGLang paper's figure (arXiv 2312.07104), for reference

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"workload name must be a non-empty identifier, got {self.name!r}")
        if self.num_programs < 1 or self.num_hf_programs < 1:
            raise ValueError(f"workload {self.name}: num_programs and num_hf_programs must be positive, "
                             f"got {self.num_programs} and {self.num_hf_programs}")

    def sizes(self, scale: float) -> tuple[int, int]:
        """(sgnb programs, transformers programs) at `scale`; at least 2 and 1, so a cache can be shared."""
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        num = max(2, round(self.num_programs * scale))
        return num, min(num, max(1, round(self.num_hf_programs * scale)))

    def check(self, kwargs: dict[str, Any], outputs: dict[str, Any], system: str) -> None:
        try:
            self.validate(kwargs, outputs)
        except MalformedOutput as exc:
            raise MalformedOutput(f"{self.name} on {system}: {exc}; outputs {outputs!r}") from None


def require(condition: bool, message: str) -> None:
    """Raise MalformedOutput(message) unless `condition`."""
    if not condition:
        raise MalformedOutput(message)
