"""The `%%sgl` cell magic.

    %%sgl [NAME[(params)]] [--model M] [--backend EXPR] [--temperature T] [--max-tokens N]
          [--out VAR] [--batch EXPR] [--no-widget]

- `NAME(params)`: defines `NAME` in the notebook, a program like any `@function` (`.run`, `.run_batch`).
  With `--batch EXPR` it is also run over that list of argument dicts.
- No name: the cell runs now; its state goes to `--out` (default `_sgl`), `_sgl["x"]` reads variable x.
  `--batch EXPR` runs it once per dict of the list (the dict's keys are the cell's variables) and `--out`
  receives the list of states.
- Backend, first match: `--backend EXPR` (evaluated in the notebook), `--model M` (an in-process engine shared
  by the kernel, created on first use), `%config SglMagics.backend = "EXPR"`, `%config SglMagics.model = "M"`,
  then sgnb's default backend (`sgnb.set_default_backend`, else the default model).
- The tiered cache: `%config SglMagics.enable_hierarchical_cache = True` (with `hicache_size`,
  `hicache_storage_dir`, `hicache_storage_size`; a storage folder alone turns it on too) configures the engines
  the magic creates (`--model M`, `SglMagics.model`); set, it also replaces sgnb's default backend for cells
  with the default model's engine so configured. With `hicache_storage_dir` the cells' prefixes survive a
  kernel restart.
- Kernels and weights: `%config SglMagics.quantization = "gguf"` (or "q8_0", "q4_0", "q4_1") and
  `%config SglMagics.cpu_kernels = False` configure the engines the magic creates likewise.
- Output: a live `ProgramView` widget in a Jupyter kernel (displayed before the run starts), else (or with
  `--no-widget`) the final text is printed.
- Ctrl-C (kernel interrupt) aborts the cell's requests; the next cell runs normally.

    %sgl_cache [URL]

shows a live `CacheTree` of the radix cache the cells use (the backend a cell without options gets), or of
the `sgnb serve` at URL.
"""

from __future__ import annotations

import argparse
import io
import threading
import tokenize
from typing import Any, Callable

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Float, Int, Unicode

from sgnb.magics.cell_function import CellFunction, compile_cell
from sgnb.magics.errors import SglSyntaxError, SglUsageError
from sgnb.magics.interruptible import run_batch_interruptibly, run_interruptibly

_MAGIC_PREFIX = "%%sgl "
_USAGE = ("%%sgl [NAME[(params)]] [--model M] [--backend EXPR] [--temperature T] [--max-tokens N] [--out VAR] "
          "[--batch EXPR] [--no-widget]")
_shared_lock = threading.Lock()
_shared_backends: dict[tuple[str, tuple], Any] = {}  # (model, sorted engine options) -> backend


def shared_backend(model: str, engine_options: dict[str, Any] | None = None) -> Any:
    """The kernel's engine backend for `model` with `engine_options`, created on first use and shared by every
    cell that asks for the same model and options."""
    options = engine_options or {}
    key = (model, tuple(sorted(options.items())))
    with _shared_lock:
        backend = _shared_backends.get(key)
        if backend is None:
            from sgnb.lang.backends.engine_backend import EngineBackend

            backend = EngineBackend(model=model, **options)
            _shared_backends[key] = backend
        return backend


class _OptionParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override] - raise instead of exiting the kernel
        raise SglUsageError(f"%%sgl: {message}\nusage: {_USAGE}")


def _option_parser() -> _OptionParser:
    parser = _OptionParser(prog="%%sgl", usage=_USAGE, add_help=False, allow_abbrev=False)
    parser.add_argument("--model", help="model of the kernel's shared engine")
    parser.add_argument("--backend", help="Python expression giving the backend (an Engine or a backend)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int, dest="max_tokens")
    parser.add_argument("--out", help="variable receiving the state (default _sgl)")
    parser.add_argument("--batch", help="Python expression giving a list of argument dicts")
    parser.add_argument("--no-widget", action="store_true", dest="no_widget")
    return parser


def split_magic_line(line: str) -> tuple[str | None, int, list[str]]:
    """`(header, header_offset_in_line, option_tokens)`; header is `NAME` / `NAME(params)` or None."""
    stripped = line.lstrip()
    at = len(line) - len(stripped)
    if not stripped or not (stripped[0].isalpha() or stripped[0] == "_"):
        return None, 0, _shell_split(line)
    end = at
    while end < len(line) and (line[end].isalnum() or line[end] == "_"):
        end += 1
    rest = line[end:]
    if rest.lstrip().startswith("("):
        end = len(line) - len(rest.lstrip())
        end += _paren_span(line, end)
    return line[at:end], at, _shell_split(line[end:])


def _paren_span(line: str, start: int) -> int:
    """Length of the parenthesized group at `line[start:]` (strings inside are skipped)."""
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line[start:]).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
                if depth == 0:
                    return tok.end[1]
    except (tokenize.TokenError, SyntaxError):
        pass
    raise SglSyntaxError("unclosed '(' in the program's parameter list", _MAGIC_PREFIX + line,
                         len(_MAGIC_PREFIX) + start, None, 1)


def _shell_split(text: str) -> list[str]:
    """Split options on whitespace outside brackets and quotes, so `--batch [dict(a=1), dict(a=2)]` is one
    value; a value wrapped whole in quotes is unquoted (`--batch "[...]"`, `--model "my model"`)."""
    tokens: list[str] = []
    current: list[str] = []
    depth = 0
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            current.append(c)
            if c == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            current.append(c)
        elif c in "([{":
            depth += 1
            current.append(c)
        elif c in ")]}":
            depth = max(0, depth - 1)
            current.append(c)
        elif c.isspace() and depth == 0:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(c)
        i += 1
    if quote:
        raise SglUsageError(f"%%sgl: unterminated {quote} quote in the options")
    if current:
        tokens.append("".join(current))
    return [t[1:-1] if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"" else t for t in tokens]


@magics_class
class SglMagics(Magics):
    """`%%sgl` and its settings (`%config SglMagics.<name> = value`)."""

    model = Unicode(
        None, allow_none=True,
        help="Model (name or path) of the kernel's shared in-process engine for %%sgl cells. "
             "None: sgnb's default backend.",
    ).tag(config=True)
    backend = Unicode(
        None, allow_none=True,
        help="Python expression giving the backend (an sgnb.Engine or a backend), evaluated in the notebook "
             "namespace at each run, e.g. %config SglMagics.backend = 'engine'. Wins over `model`.",
    ).tag(config=True)
    temperature = Float(None, allow_none=True, help="Default sampling temperature (None: run()'s 1.0).").tag(
        config=True)
    max_tokens = Int(None, allow_none=True, help="Default max new tokens per gen (None: run()'s 128).").tag(
        config=True)
    widget = Bool(True, help="Show the live ProgramView widget in a Jupyter kernel (else print the text).").tag(
        config=True)
    # Engine options (the tiered cache) of the engines the magic creates; None leaves the engine's default.
    enable_hierarchical_cache = Bool(
        False, help="Keep evicted KV in host memory (and on disk with hicache_storage_dir) in the engines the "
                    "magic creates; also gives cells the default model's engine so configured.",
    ).tag(config=True)
    hicache_size = Float(None, allow_none=True, help="GB of host memory for the host tier (None: the engine's "
                                                     "default).").tag(config=True)
    hicache_storage_dir = Unicode(
        None, allow_none=True, help="Folder of the disk tier (turns the tiered cache on): the cells' cached "
                                    "prefixes survive a kernel restart.",
    ).tag(config=True)
    hicache_storage_size = Float(None, allow_none=True, help="GB cap of the disk tier (None: the engine's "
                                                             "default).").tag(config=True)
    # The C++ CPU kernels and packed weights of the engines the magic creates (Engine's options of these names).
    quantization = Unicode(
        None, allow_none=True, help="Packed weights: 'gguf' (the GGUF's own blocks), 'q8_0', 'q4_0' or 'q4_1' "
                                    "(an HF folder quantized at load); None: dense weights.",
    ).tag(config=True)
    cpu_kernels = Bool(True, help="Run the C++ CPU kernels where they build (False: the torch path).").tag(
        config=True)

    # ------------------------------------------------------------ the magic
    @cell_magic
    def sgl(self, line: str, cell: str) -> None:
        """Run (or define) a program written in the %%sgl cell language; see `sgnb.magics`."""
        header, header_at, argv = split_magic_line(line)
        opts = _option_parser().parse_args(argv)
        if opts.out is not None and not opts.out.isidentifier():
            raise SglUsageError(f"%%sgl: --out needs a variable name, got {opts.out!r}")
        if opts.model is not None and opts.backend is not None:
            raise SglUsageError("%%sgl: pass --model or --backend, not both")
        if header is not None and opts.batch is None and opts.out is not None:
            raise SglUsageError("%%sgl: --out applies to a cell that runs (no NAME, or --batch)")
        namespace = self.shell.user_ns
        backend_factory = None
        if header is not None:
            if opts.backend is not None:
                chosen = self.resolve_backend(opts)
                backend_factory = lambda: chosen  # noqa: E731
            else:
                backend_factory = lambda: self.resolve_backend(opts)  # noqa: E731
        function = compile_cell(
            cell, header, namespace, first_line=2, run_defaults=self.run_defaults(opts),
            backend_factory=backend_factory, header_line=_MAGIC_PREFIX + line,
            header_offset=len(_MAGIC_PREFIX) + header_at,
        )
        if header is not None:
            namespace[function.__name__] = function
            if opts.batch is None:
                return None
        out = opts.out or "_sgl"
        backend = self.resolve_backend(opts)
        if opts.batch is not None:
            batch = self._eval_option("--batch", opts.batch)
            if not isinstance(batch, (list, tuple)) or not all(isinstance(row, dict) for row in batch):
                raise SglUsageError(f"%%sgl: --batch {opts.batch!r} must give a list of argument dicts, got "
                                    f"{type(batch).__name__}")
            try:
                states = run_batch_interruptibly(function, list(batch), backend=backend)
            except (TypeError, ValueError) as exc:  # argument checks; program errors stay on the states
                raise SglUsageError(f"%%sgl: --batch: {exc}") from exc
            namespace[out] = states
            self._report_batch(function, states)
            return None
        view = self._open_view(opts)

        def on_start(state: Any) -> None:
            namespace[out] = state
            if view is not None:
                view.attach(state)

        try:
            # the live view shows each generated token's logprob and alternatives on hover
            extra = {"return_logprob": True, "top_logprobs_num": 5} if view is not None else {}
            state = run_interruptibly(function, backend=backend, on_start=on_start, **extra)
        finally:
            if view is not None:
                view.detach()  # last update, and the static HTML for nbconvert / GitHub
        error = function.program.runtime_error(state)
        if error is not None:
            raise error
        if view is None:
            print(state.text())
        return None

    @line_magic
    def sgl_cache(self, line: str) -> Any:
        """`%sgl_cache [URL]`: a live CacheTree of the cells' engine (or of the `sgnb serve` at URL)."""
        args = _shell_split(line)
        if len(args) > 1 or (args and not args[0].startswith(("http://", "https://"))):
            raise SglUsageError(f"%sgl_cache takes nothing or one http(s):// server URL, got {line.strip()!r}")
        from sgnb.widgets import CacheTree

        return CacheTree(args[0] if args else self.resolve_backend(_option_parser().parse_args([])))

    # ------------------------------------------------------------ settings
    def run_defaults(self, opts: argparse.Namespace) -> dict[str, Any]:
        """Sampling defaults for the cell's program: options first, then the magic's settings."""
        defaults: dict[str, Any] = {}
        temperature = opts.temperature if opts.temperature is not None else self.temperature
        max_tokens = opts.max_tokens if opts.max_tokens is not None else self.max_tokens
        if temperature is not None:
            if temperature < 0:
                raise SglUsageError(f"%%sgl: --temperature must be >= 0, got {temperature}")
            defaults["temperature"] = temperature
        if max_tokens is not None:
            if max_tokens < 1:
                raise SglUsageError(f"%%sgl: --max-tokens must be >= 1, got {max_tokens}")
            defaults["max_new_tokens"] = max_tokens
        return defaults

    def resolve_backend(self, opts: argparse.Namespace) -> Any:
        """The backend for a cell (see the module docstring for the order)."""
        from sgnb.lang.api import as_backend, get_default_backend
        from sgnb.lang.global_config import global_config

        if opts.backend is not None:
            return self._as_backend(self._eval_option("--backend", opts.backend), "--backend", as_backend)
        options = self.engine_options()
        if opts.model is not None:
            return shared_backend(opts.model, options)
        if self.backend:
            return self._as_backend(self._eval_option("SglMagics.backend", self.backend), "SglMagics.backend",
                                    as_backend)
        if self.model:
            return shared_backend(self.model, options)
        if options:
            return shared_backend(global_config.default_model, options)
        return get_default_backend()

    def engine_options(self) -> dict[str, Any]:
        """`Engine` options of the engines the magic creates: those set away from the engine's defaults (the
        tiered cache's when it is on, the kernels', the quantization)."""
        options = {"quantization": self.quantization, "cpu_kernels": None if self.cpu_kernels else False}
        if self.enable_hierarchical_cache or self.hicache_storage_dir:  # a storage folder asks for the tiers
            options |= {"enable_hierarchical_cache": True, "hicache_size": self.hicache_size,
                        "hicache_storage_dir": self.hicache_storage_dir,
                        "hicache_storage_size": self.hicache_storage_size}
        return {name: value for name, value in options.items() if value is not None}

    @staticmethod
    def _as_backend(value: Any, where: str, as_backend: Callable[[Any], Any]) -> Any:
        try:
            return as_backend(value)
        except ValueError as exc:
            raise SglUsageError(f"%%sgl: {where}: {exc}") from None

    def _eval_option(self, where: str, expression: str) -> Any:
        try:
            return eval(expression, self.shell.user_ns)  # noqa: S307 - the user's own notebook expression
        except Exception as exc:  # noqa: BLE001
            raise SglUsageError(f"%%sgl: {where} {expression!r} failed: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------ output
    def _open_view(self, opts: argparse.Namespace) -> Any:
        """Display a live ProgramView before the run starts (browser messages wait for the cell's end; trait
        updates from the poller thread do not) and return it; None for text output."""
        if opts.no_widget or not self.widget or getattr(self.shell, "kernel", None) is None:
            return None
        try:
            from sgnb.widgets import ProgramView
        except ImportError as exc:
            if exc.name not in (None, "sgnb.widgets"):
                raise
            return None  # widgets not available in this install: print the text instead
        from IPython.display import display

        view = ProgramView()
        display(view)
        return view

    def _report_batch(self, function: CellFunction, states: list[Any]) -> None:
        errors = [function.program.runtime_error(s) for s in states]
        if states and all(e is not None for e in errors):
            raise errors[0]
        for i, (state, error) in enumerate(zip(states, errors)):
            if error is not None:
                print(f"[{i}] error: {error.message}")
                continue
            values = ", ".join(f"{k}={_short(v)}" for k, v in state.stream_executor.data.variables.items())
            print(f"[{i}] {values}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
