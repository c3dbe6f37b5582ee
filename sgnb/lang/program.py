"""`@function`: a prompt program, and how it runs (`run`, `run_batch`, `bind`, `trace`, `compile`)."""

from __future__ import annotations

import inspect
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Iterator

from sgnb.lang.api import resolve_backend
from sgnb.lang.backends.base import Backend, SamplingSpec
from sgnb.lang.batch_progress import BatchProgress
from sgnb.lang.errors import ProgramInterrupted
from sgnb.lang.global_config import global_config
from sgnb.lang.interpreter import StreamExecutor
from sgnb.lang.interrupt import ProgramGroup, abort_on_interrupt
from sgnb.lang.sampling_args import RUN_KEYWORDS, pop_run_defaults, with_keywords
from sgnb.lang.state import ProgramState
from sgnb.lang.tracer import TracedProgram, trace_program


class SglFunction:
    """A program: a Python function whose first parameter is the state `s`.

    Calling it (`f(question=...)`) is `f.run(...)`; calling it with a state as first argument
    (`f(s, ...)`, inside another program) appends to that state instead.
    """

    def __init__(
        self, func: Callable, num_api_spec_tokens: int | None = None, bind_arguments: dict[str, Any] | None = None
    ) -> None:
        if not callable(func):
            raise TypeError(f"@function needs a function, got {func!r}")
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise ValueError(f"program {func.__name__!r} must take the state as its first parameter (`def f(s, ...)`)")
        if num_api_spec_tokens is not None and (not isinstance(num_api_spec_tokens, int) or num_api_spec_tokens < 1):
            raise ValueError(f"num_api_spec_tokens must be a positive integer, got {num_api_spec_tokens!r}")
        self.func = func
        self.num_api_spec_tokens = num_api_spec_tokens
        self.bind_arguments = dict(bind_arguments or {})
        self.signature = signature
        self.arg_names = [p.name for p in params[1:]]
        self.__name__ = getattr(func, "__name__", "program")
        self.__doc__ = func.__doc__
        unknown = [k for k in self.bind_arguments if not self._accepts(k)]
        if unknown:
            raise ValueError(f"program {self.__name__!r} has no parameter(s) {unknown} (parameters: {self.arg_names})")

    def _accepts(self, name: str) -> bool:
        return name in self.arg_names or any(p.kind is p.VAR_KEYWORD for p in self.signature.parameters.values())

    def _check_args(self, args: tuple, kwargs: dict, where: str = "") -> dict:
        kwargs = {**self.bind_arguments, **kwargs}
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"program {self.__name__!r}{where}: {exc}") from None
        return kwargs

    # ---------------------------------------------------------------- variants
    def bind(self, **kwargs: Any) -> SglFunction:
        """A copy with some arguments fixed."""
        return SglFunction(self.func, self.num_api_spec_tokens, {**self.bind_arguments, **kwargs})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], ProgramState):
            return self.func(args[0], *args[1:], **{**self.bind_arguments, **kwargs})
        return self.run(*args, **kwargs)

    # ---------------------------------------------------------------- running
    @with_keywords(RUN_KEYWORDS, SamplingSpec(), keep_var_keyword=True)
    def run(self, *args: Any, stream: bool = False, backend: Any = None, use_thread: bool = True,
            **kwargs: Any) -> ProgramState:
        """Run once. The sampling keywords (`sgnb.lang.sampling_args.RUN_KEYWORDS`: `max_new_tokens`,
        `temperature`, ...) are the defaults of every gen; the other keywords are the program's arguments.
        Returns the state; with `stream=True` it returns at once and the program runs on a
        thread (read it with `text_iter`). Without streaming, an error raised by the program (or the backend)
        is raised here; the state keeps it too (`state.error()`). Ctrl-C aborts the program's requests and
        raises `ProgramInterrupted` (a `KeyboardInterrupt`)."""
        defaults = pop_run_defaults(kwargs)
        kwargs = self._check_args(args, kwargs)
        return run_program(self, resolve_backend(backend), args, kwargs, defaults, stream, raise_errors=True)

    @with_keywords(RUN_KEYWORDS, SamplingSpec())
    def run_batch(
        self,
        batch_kwargs: list[dict[str, Any]],
        *,
        backend: Any = None,
        num_threads: int | str = "auto",
        progress_bar: bool = False,
        generator_style: bool = False,
        _precache: bool = True,
        **sampling: Any,
    ) -> list[ProgramState] | Iterator[ProgramState]:
        """Run once per kwargs dict, concurrently, with `run`'s sampling keywords. A program that fails records
        its error on its own state (`states[i].error()`); the others complete. The constant prefix of the
        program is committed into the cache once before the batch starts
        (`global_config.enable_precache_with_tracing`). Ctrl-C stops every run (started or not), aborts their
        requests and raises `ProgramInterrupted`."""
        defaults = pop_run_defaults(sampling)
        if sampling:
            raise TypeError(f"run_batch() got unexpected keyword argument(s): {', '.join(sorted(sampling))}")
        if isinstance(batch_kwargs, dict) or not hasattr(batch_kwargs, "__iter__"):
            raise ValueError("run_batch takes a list of keyword-argument dicts, one per program run")
        batch_kwargs = list(batch_kwargs)
        for i, item in enumerate(batch_kwargs):
            if not isinstance(item, dict):
                raise ValueError(f"run_batch item {i} must be a dict of program arguments, got {type(item).__name__}")
        batch_kwargs = [self._check_args((), item, where=f" (batch item {i})") for i, item in enumerate(batch_kwargs)]
        if num_threads == "auto":
            num_threads = max(1, min(len(batch_kwargs), max(64, (os.cpu_count() or 1) * 16)))
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be 'auto' or a positive integer, got {num_threads!r}")
        backend = resolve_backend(backend)
        if not batch_kwargs:
            return iter([]) if generator_style else []
        if _precache and global_config.enable_precache_with_tracing and len(batch_kwargs) > 1:
            precache_prefix(self, backend)

        group = ProgramGroup()  # Ctrl-C in this thread stops every run of the batch

        def one(kwargs: dict) -> ProgramState:
            return run_program(self, backend, (), kwargs, defaults, stream=False, raise_errors=False, group=group)

        if generator_style:
            return self._run_batch_iter(one, group, batch_kwargs, num_threads, progress_bar)
        states: list[ProgramState | None] = [None] * len(batch_kwargs)
        progress = BatchProgress(len(batch_kwargs), progress_bar, self.__name__)
        try:
            with ThreadPoolExecutor(num_threads, thread_name_prefix="sgnb-batch") as pool:
                with group.abort_on_interrupt(pool):
                    futures = {pool.submit(one, kw): i for i, kw in enumerate(batch_kwargs)}
                    for future in as_completed(futures):
                        states[futures[future]] = future.result()
                        progress.advance()
        finally:
            progress.close()
        return states  # type: ignore[return-value]

    def _run_batch_iter(self, one, group, batch_kwargs, num_threads, progress_bar) -> Iterator[ProgramState]:
        progress = BatchProgress(len(batch_kwargs), progress_bar, self.__name__)
        try:
            with ThreadPoolExecutor(num_threads, thread_name_prefix="sgnb-batch") as pool:
                futures = [pool.submit(one, kw) for kw in batch_kwargs]
                for future in futures:
                    with group.abort_on_interrupt(pool):
                        state = future.result()
                    yield state
                    progress.advance()
        finally:
            progress.close()

    # ---------------------------------------------------------------- structure
    def trace(self, *args: Any, backend: Any = None, **kwargs: Any) -> TracedProgram:
        """Run the body on placeholders (arguments not given stay symbolic) and record what it appends up to
        the first value known only at run time."""
        return trace_program(self.func, self.arg_names, args, {**self.bind_arguments, **kwargs})

    def prefix_hint(self, backend: Any = None) -> str:
        """The constant text every run of this program starts with, rendered for `backend`'s chat template."""
        backend = resolve_backend(backend)
        return self.trace().prefix(backend.get_chat_template())

    def compile(self, *, backend: Any = None) -> CompiledFunction:
        """A version that commits the program's constant prefix into the backend's cache once, up front."""
        return CompiledFunction(self, backend)

    def __repr__(self) -> str:
        return f"SglFunction({self.__name__})"


class CompiledFunction:
    """A program with its prefix hint: the constant prefix is cached once per backend, then runs reuse it."""

    def __init__(self, function: SglFunction, backend: Any = None) -> None:
        self.function = function
        self.backend = backend
        self.traced = function.trace()
        self._cached_on: set[int] = set()
        self._lock = threading.Lock()

    def prefix(self, backend: Any = None) -> str:
        return self.traced.prefix(resolve_backend(backend or self.backend).get_chat_template())

    def _ensure_cached(self, backend: Backend) -> None:
        with self._lock:
            if id(backend) in self._cached_on:
                return
            prefix = self.traced.prefix(backend.get_chat_template())
            if prefix:
                backend.cache_prefix(prefix)
            self._cached_on.add(id(backend))

    def run(self, *args: Any, backend: Any = None, **kwargs: Any) -> ProgramState:
        backend = resolve_backend(backend or self.backend)
        self._ensure_cached(backend)
        return self.function.run(*args, backend=backend, **kwargs)

    def run_batch(self, batch_kwargs: list[dict], *, backend: Any = None, **kwargs: Any):
        backend = resolve_backend(backend or self.backend)
        self._ensure_cached(backend)
        return self.function.run_batch(batch_kwargs, backend=backend, _precache=False, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)


def function(func: Callable | None = None, *, num_api_spec_tokens: int | None = None) -> Any:
    """Decorator: `@function` or `@function(num_api_spec_tokens=64)`."""
    if func is None:
        return lambda f: SglFunction(f, num_api_spec_tokens=num_api_spec_tokens)
    return SglFunction(func, num_api_spec_tokens=num_api_spec_tokens)


def run_program(
    program: SglFunction, backend: Backend, args: tuple, kwargs: dict, defaults: SamplingSpec, stream: bool,
    raise_errors: bool, group: ProgramGroup | None = None,
) -> ProgramState:
    """Create a state and execute the program body on it (on a thread when streaming). Ctrl-C in the body or
    in the wait for its forks stops the program and raises `ProgramInterrupted`. With `group` (a batch), the
    program does not run once the group was interrupted."""
    executor = StreamExecutor(backend, kwargs, defaults, None, stream, program.num_api_spec_tokens)
    state = ProgramState(executor)
    interrupted = group.add(executor) if group is not None else None
    if interrupted is not None:
        executor.set_error(interrupted)
        executor.end()
        return state

    def body() -> None:
        executor.owner_threads.add(threading.get_ident())
        try:
            with abort_on_interrupt(executor):
                state.ret_value = program.func(state, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - recorded on the state
            executor.set_error(exc)
        finally:
            executor.end()

    if stream:
        threading.Thread(target=body, name=f"sgnb-program-{executor.sid}", daemon=True).start()
        return state
    body()
    if not isinstance(executor.error, ProgramInterrupted):  # stopped: its backend calls have ended already
        executor.wait_tree_finished()
    if raise_errors and executor.error is not None:
        raise executor.error
    return state


def precache_prefix(program: SglFunction, backend: Backend) -> str:
    """Trace `program` and commit its constant prefix into `backend`'s cache (if long enough)."""
    prefix = program.trace().prefix(backend.get_chat_template())
    if len(prefix) >= global_config.min_precache_chars:
        if global_config.verbosity:
            print(f"sgnb: precaching {len(prefix)} chars of {program.__name__}", file=sys.stderr)
        backend.cache_prefix(prefix)
        return prefix
    return ""
