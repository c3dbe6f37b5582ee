"""How the interpreter drives API speculative execution (`@function(num_api_spec_tokens=...)`).

The algorithms live in `sgnb.lang.backends.api_speculative`; this module connects them to a program state:
- chat backends: an assistant turn opened while speculation is on collects its gens (`ChatSpecTurn`), and the
  turn's end serves them all with one call, then records the pieces;
- completion backends: a state's `CompletionSpeculator` serves single-sample gens from text generated ahead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sgnb.lang.backends.api_speculative import ChatSpecTurn, CompletionSpeculator
from sgnb.lang.backends.base import SamplingSpec
from sgnb.lang.ir import Gen
from sgnb.lang.spans import record

if TYPE_CHECKING:
    from sgnb.lang.interpreter import StreamExecutor

_UNNAMED_PREFIX = "_unnamed_gen_"


def make_speculator(executor: StreamExecutor) -> CompletionSpeculator | None:
    """The state's completion speculator, when speculation is on and the backend is a completion model."""
    if executor.num_api_spec_tokens is None or executor.backend.is_chat_model:
        return None
    return CompletionSpeculator(executor.num_api_spec_tokens)


def open_chat_turn(executor: StreamExecutor, role: str) -> None:
    """Start collecting an assistant turn (chat backends with speculation on)."""
    if role == "assistant" and executor.num_api_spec_tokens is not None and executor.backend.is_chat_model:
        executor.spec_turn = ChatSpecTurn(executor.num_api_spec_tokens)


def speculative_gen(executor: StreamExecutor, expr: Gen, params: SamplingSpec) -> bool:
    """Serve `expr` speculatively when it can be; False means it must be run normally."""
    name = expr.name
    if executor.spec_turn is not None:
        if name is None:
            executor.num_spec_unnamed += 1
            name = f"{_UNNAMED_PREFIX}{executor.num_spec_unnamed}"
        executor.spec_turn.add_gen(name, params)  # its value is known at the turn's end
        return True
    if executor.speculator is not None and params.n == 1:
        ctx = executor.context()
        start = len(executor.data.text)
        comp, meta = executor.speculator.gen(executor.backend, ctx, params)
        executor.append_text(comp)
        record(executor, name, "gen", comp, meta, start, expr.sampling)
        return True
    return False


def run_chat_turn(executor: StreamExecutor) -> None:
    """Chat models: serve the gens of the assistant turn that is ending with one call (then split)."""
    turn, executor.spec_turn = executor.spec_turn, None
    pieces = turn.run(executor.backend, executor.context())
    for name, text in pieces:
        if name is None:
            executor.append_text(text)
            continue
        start = len(executor.data.text)
        executor.append_text(text)
        is_named = not name.startswith(_UNNAMED_PREFIX)
        meta = {"speculative": True, "num_turn_calls": turn.num_calls}
        record(executor, name if is_named else None, "gen", text, meta, start, {})


__all__ = ["make_speculator", "open_chat_turn", "speculative_gen", "run_chat_turn"]
