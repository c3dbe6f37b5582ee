"""Errors of the language: what a program state raises to its readers (failure, unknown variable,
interruption), chat templates that cannot be used, and the tracer's stop signal."""

from __future__ import annotations


class ProgramError(RuntimeError):
    """A program state failed; raised to readers of its variables. `__cause__` is the original error."""


class UnknownVariableError(KeyError):
    """A variable that the program never produced (and never will)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class ProgramInterrupted(KeyboardInterrupt):
    """Ctrl-C reached a caller waiting on a program (or a batch of them): the programs were stopped.

    Raised in place of the `KeyboardInterrupt`, and recorded as the error of every state it stopped.
    num_aborted: backend requests that were running and got aborted; None when the backend cannot abort
                 requests (HTTP endpoints: their calls finish in the background).
    is_drained:  every backend call of the programs had ended when this was raised.
    """

    def __init__(self, num_aborted: int | None = None, is_drained: bool = False) -> None:
        super().__init__()
        self.num_aborted = num_aborted
        self.is_drained = is_drained

    def __str__(self) -> str:
        if self.num_aborted is None:
            return "program interrupted; the backend cannot abort requests, its calls finish in the background"
        return f"program interrupted; aborted {self.num_aborted} running request(s)"



class ChatTemplateError(ValueError):
    """A chat template whose role strings cannot be derived (e.g. it rewrites message contents)."""


class StopTracing(Exception):
    """The program did something that depends on a runtime value; the trace ends here."""


__all__ = ["ChatTemplateError", "ProgramError", "ProgramInterrupted", "StopTracing", "UnknownVariableError"]
