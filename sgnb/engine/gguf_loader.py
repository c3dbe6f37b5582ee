"""Read a llama.cpp GGUF file as a Hugging Face model: config, fp32 weights, tokenizer.

The GGUF is parsed with the `gguf` package's ``GGUFReader`` and every tensor is
dequantized to fp32 with its ``dequantize``. Names are mapped from llama.cpp's
layout (``blk.N.attn_q.weight``) to HF Llama/Qwen2 names
(``model.layers.N.self_attn.q_proj.weight``).

llama.cpp's converter permutes the rows of Llama's Q and K projections so that
its rotary kernel can rotate adjacent pairs ``(x0, x1), (x2, x3), ...``; HF's
``rotate_half`` rotates the two halves of each head instead. We undo that
permutation here. Qwen2 uses the NEOX (halves) layout in llama.cpp too, so its
Q/K are stored unpermuted.

Dequantizing takes seconds; `convert_gguf_to_hf` writes a safetensors folder once
so later loads take about a second. `tensors(packed=True)` instead keeps Q4_0/Q4_1/Q8_0
matrices in their own blocks (`Engine(quantization="gguf")`), which the C++ kernels run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sgnb.engine.errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from gguf import GGUFReader, ReaderTensor

    from sgnb.kernels.quant_weights import PackedWeight


# GGUF `general.architecture` -> (HF architectures entry, HF model_type, whether Q/K rows are permuted)
_ARCHITECTURES: dict[str, tuple[str, str, bool]] = {
    "llama": ("LlamaForCausalLM", "llama", True),
    "qwen2": ("Qwen2ForCausalLM", "qwen2", False),
}

# llama.cpp per-layer tensor name -> HF per-layer name (prefix `model.layers.N.` added)
_LAYER_TENSORS: dict[str, str] = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_GLOBAL_TENSORS: dict[str, str] = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_REQUIRED_LAYER_TENSORS = (
    "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
    "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "attn_norm.weight", "ffn_norm.weight",
)
_LAYER_NAME = re.compile(r"^blk\.(\d+)\.(.+)$")
# GGUF tensor types whose blocks `tensors(packed=True)` keeps as they are (`sgnb.kernels.quant_weights`)
_PACKED_TYPES = ("Q4_0", "Q4_1", "Q8_0")


@dataclass(slots=True)
class GGUFModel:
    """A parsed GGUF file: its HF-style config and lazy access to its fp32 weights."""

    path: Path
    architecture: str  # GGUF `general.architecture`, e.g. "llama"
    config: dict[str, Any]  # HF config.json contents
    _reader: GGUFReader = field(repr=False)
    _hf_names: dict[str, str] = field(repr=False)  # gguf tensor name -> HF name

    @property
    def num_tensors(self) -> int:
        return len(self._hf_names)

    def tensors(self, packed: bool = False) -> Iterator[tuple[str, torch.Tensor | PackedWeight]]:
        """Yield ``(hf_name, tensor)`` in file order, each dequantized to a contiguous fp32 tensor.

        packed: Q4_0 / Q4_1 / Q8_0 matrices come as `PackedWeight`s of their own blocks instead (no dequantizing;
        Q/K rows unpermuted as whole block rows); other types are still dequantized.
        """
        import numpy as np
        import torch

        permute_qk = _ARCHITECTURES[self.architecture][2]
        num_heads = self.config["num_attention_heads"]
        num_kv_heads = self.config["num_key_value_heads"]
        for t in self._reader.tensors:
            hf_name = self._hf_names.get(t.name)
            if hf_name is None:  # metadata-only tensors we deliberately skip
                continue
            is_packed = packed and t.tensor_type.name in _PACKED_TYPES and len(t.shape) == 2
            # raw blocks: uint8 [out_features, in_features // 32 * block_bytes], one block row per weight row
            weight = np.asarray(t.data) if is_packed else _dequantize(self.path, t)
            if permute_qk and t.name.endswith(("attn_q.weight", "attn_q.bias")):
                weight = _unpermute_rotary_rows(weight, num_heads)
            elif permute_qk and t.name.endswith(("attn_k.weight", "attn_k.bias")):
                weight = _unpermute_rotary_rows(weight, num_kv_heads)
            if is_packed:
                from sgnb.kernels.quant_weights import pack_gguf

                out_features, in_features = (int(d) for d in reversed(t.shape))
                weight = np.ascontiguousarray(weight)
                if not weight.flags.writeable:  # a view of the read-only memmap (torch wants writable arrays)
                    weight = weight.copy()
                yield hf_name, pack_gguf(weight, t.tensor_type.name.lower(), out_features, in_features)
                continue
            weight = np.ascontiguousarray(weight, dtype=np.float32)
            if not weight.flags.writeable:  # F32 tensors are views of the read-only memmap
                weight = weight.copy()
            yield hf_name, torch.from_numpy(weight)


def read_gguf(path: str | Path) -> GGUFModel:
    """Parse ``path``'s metadata and tensor index (no weights are dequantized yet).

    Raises ModelLoadError when the file is missing, is not a GGUF, is truncated,
    or holds an architecture other than llama or qwen2.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"GGUF file not found: {path}")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as e:  # the reader raises ValueError, IndexError, struct errors... on bad bytes
        raise ModelLoadError(
            f"{path} is not a valid GGUF file (corrupt, truncated, or another format): {type(e).__name__}: {e}"
        ) from e
    for t in reader.tensors:
        if t.data.nbytes != t.n_bytes:
            raise ModelLoadError(
                f"{path} is truncated: tensor {t.name!r} needs {t.n_bytes} bytes, file holds {t.data.nbytes}"
            )

    meta = _Metadata(path, reader)
    arch = meta.get("general.architecture")
    if arch not in _ARCHITECTURES:
        supported = ", ".join(sorted(_ARCHITECTURES))
        raise ModelLoadError(f"{path}: GGUF architecture {arch!r} is not supported (supported: {supported})")

    names = {t.name for t in reader.tensors}
    config = _hf_config(meta, arch, names)
    hf_names = _map_tensor_names(path, names, config["num_hidden_layers"])
    return GGUFModel(path=path, architecture=arch, config=config, _reader=reader, _hf_names=hf_names)


def convert_gguf_to_hf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write an HF model folder from a GGUF file and return it.

    The folder gets config.json, model.safetensors (fp32), generation_config.json and
    the tokenizer (tokenizer.json, tokenizer_config.json, chat template) as built by
    transformers from the GGUF's tokenizer metadata.
    """
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    gguf_path = Path(gguf_path)
    model = read_gguf(gguf_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    weights = dict(model.tensors())
    if model.config["tie_word_embeddings"]:
        weights.pop("lm_head.weight", None)
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    del weights

    _write_json(out_dir / "config.json", model.config)
    generation = {k: model.config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in model.config}
    _write_json(out_dir / "generation_config.json", generation)

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as e:
        raise ModelLoadError(f"{gguf_path}: could not build the tokenizer from GGUF metadata: {e}") from e
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


# --- internals ---------------------------------------------------------------------------------


class _Metadata:
    """Typed access to a GGUFReader's key/value fields."""

    def __init__(self, path: Path, reader: GGUFReader) -> None:
        self._path = path
        self._fields = reader.fields

    def get(self, key: str, default: Any = None) -> Any:
        f = self._fields.get(key)
        if f is None:
            return default
        try:
            value = f.contents()
        except Exception as e:
            raise ModelLoadError(f"{self._path}: unreadable metadata field {key!r}: {e}") from e
        return value

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise ModelLoadError(f"{self._path}: GGUF metadata lacks required key {key!r}")
        return value


def _hf_config(meta: _Metadata, arch: str, tensor_names: set[str]) -> dict[str, Any]:
    hf_arch, model_type, _ = _ARCHITECTURES[arch]
    hidden_size = int(meta.require(f"{arch}.embedding_length"))
    num_heads = int(meta.require(f"{arch}.attention.head_count"))
    num_kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", num_heads))
    head_dim = int(meta.get(f"{arch}.attention.key_length", hidden_size // num_heads))
    vocab_size = meta.get(f"{arch}.vocab_size")
    if vocab_size is None:
        tokens = meta.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise ModelLoadError(f"{meta._path}: GGUF metadata gives no vocabulary size")
        vocab_size = len(tokens)
    if "rope_freqs.weight" in tensor_names:
        raise ModelLoadError(
            f"{meta._path}: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 style) are not supported"
        )

    config: dict[str, Any] = {
        "architectures": [hf_arch],
        "model_type": model_type,
        "hidden_size": hidden_size,
        "intermediate_size": int(meta.require(f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(meta.require(f"{arch}.block_count")),
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": float(meta.require(f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.require(f"{arch}.context_length")),
        "vocab_size": int(vocab_size),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "torch_dtype": "float32",
    }
    if arch == "llama":
        config["attention_bias"] = "blk.0.attn_q.bias" in tensor_names
        config["mlp_bias"] = False
    for gguf_key, hf_key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("padding", "pad_token_id")):
        token_id = meta.get(f"tokenizer.ggml.{gguf_key}_token_id")
        if token_id is not None:
            config[hf_key] = int(token_id)

    scaling_type = meta.get(f"{arch}.rope.scaling.type")
    if scaling_type not in (None, "none"):
        factor = meta.get(f"{arch}.rope.scaling.factor")
        if factor is None:
            raise ModelLoadError(f"{meta._path}: rope scaling {scaling_type!r} has no factor")
        rope_scaling: dict[str, Any] = {"rope_type": str(scaling_type), "factor": float(factor)}
        original = meta.get(f"{arch}.rope.scaling.original_context_length")
        if original is not None:
            rope_scaling["original_max_position_embeddings"] = int(original)
        config["rope_scaling"] = rope_scaling
    return config


def _map_tensor_names(path: Path, names: set[str], num_layers: int) -> dict[str, str]:
    hf_names: dict[str, str] = {}
    for name in names:
        if name in _GLOBAL_TENSORS:
            hf_names[name] = _GLOBAL_TENSORS[name]
            continue
        m = _LAYER_NAME.match(name)
        if m is None or m.group(2) not in _LAYER_TENSORS or int(m.group(1)) >= num_layers:
            raise ModelLoadError(f"{path}: unexpected tensor {name!r} for a {num_layers}-layer model")
        hf_names[name] = f"model.layers.{m.group(1)}.{_LAYER_TENSORS[m.group(2)]}"

    missing = [n for n in ("token_embd.weight", "output_norm.weight") if n not in names]
    missing += [f"blk.{i}.{s}" for i in range(num_layers) for s in _REQUIRED_LAYER_TENSORS if f"blk.{i}.{s}" not in names]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelLoadError(f"{path}: GGUF lacks {len(missing)} required tensor(s): {shown}")
    return hf_names


def _dequantize(path: Path, t: ReaderTensor) -> np.ndarray:
    """Dequantize one reader tensor to fp32 in HF's row-major [out_features, in_features] shape."""
    from gguf import dequantize

    try:
        weight = dequantize(t.data, t.tensor_type)
    except NotImplementedError as e:
        raise ModelLoadError(f"{path}: tensor {t.name!r} uses unsupported type {t.tensor_type.name}") from e
    # GGUF lists dims fastest-first (ne0 = in_features); numpy/torch want them slowest-first.
    return weight.reshape([int(d) for d in reversed(t.shape)])


def _unpermute_rotary_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation.

    Per head, llama.cpp stores rows in interleaved order (pair i of the two halves
    becomes rows 2i, 2i+1). Rows [num_heads * head_dim, ...] -> group them as
    [num_heads, head_dim // 2, 2, ...], swap the last two groups back to
    [num_heads, 2, head_dim // 2, ...].
    """
    rows = weight.shape[0]
    if rows % (2 * num_heads) != 0:
        raise ModelLoadError(f"cannot unpermute {rows} rows over {num_heads} heads")
    rest = weight.shape[1:]
    return weight.reshape(num_heads, rows // num_heads // 2, 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
