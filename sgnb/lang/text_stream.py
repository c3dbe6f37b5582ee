"""Streaming reads of a program state (`state.text_iter()` with `run(stream=True)`).

The reader wakes on every change the worker makes (`version` bumps) and yields the text added since the last
piece: of the whole state, or of one variable (its partial value while a streaming `gen` produces it). Ctrl-C
while waiting stops the program (`sgnb.lang.interrupt`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from sgnb.lang.errors import ProgramError
from sgnb.lang.interrupt import abort_on_interrupt

if TYPE_CHECKING:
    from sgnb.lang.interpreter import StreamExecutor


def iter_changes(executor: StreamExecutor, var_name: str | None) -> Iterator[str]:
    """Yield new text of the state (or of `var_name`) as the worker produces it, until it is final."""
    prev = 0
    seen_version = -1
    while True:
        with abort_on_interrupt(executor), executor.cond:
            executor.cond.wait_for(lambda: executor.version != seen_version or executor.can_never_change())
            seen_version = executor.version
            data = executor.data
            if var_name is None:
                current = data.text
                done = executor.can_never_change() or executor.error is not None
            elif var_name in data.variables:
                value = data.variables[var_name]
                current = value if isinstance(value, str) else str(value)
                done = True
            else:
                current = data.partial_vars.get(var_name, "")
                done = executor.can_never_change() or executor.error is not None
                if done and executor.error is None and var_name not in data.partial_vars:
                    raise executor.unknown_variable(var_name)
        if len(current) > prev:
            yield current[prev:]
            prev = len(current)
        if done:
            error = executor.error
            if error is not None and var_name is not None and var_name not in executor.data.variables:
                raise ProgramError(f"program state {executor.sid} failed: {error}") from error
            return


__all__ = ["iter_changes"]
