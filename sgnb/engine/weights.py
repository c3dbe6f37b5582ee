"""Build a model and load its weights from an HF folder (safetensors) or a `.gguf` file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models import model_class
from sgnb.engine.models.base import CausalLM
from sgnb.engine.packed_weights import LM_HEAD, concat_parts, finish_packing
from sgnb.kernels.fused_ops import get_fused_ops
from sgnb.kernels.quant_weights import PackedWeight


def iter_safetensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"model folder {folder} has no *.safetensors weights")
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"cannot read weights {path}: {exc}") from exc


def load_model(source: str | Path, dtype: torch.dtype, device: str, prepack: bool = True,
               quantization: str | None = None, cpu_kernels: bool = False) -> tuple[CausalLM, ModelConfig]:
    """Instantiate the registered class for the source's architecture and fill its weights.

    Talks to the model only through `CausalLM` (see `sgnb.engine.models.base` for the sequence).
    prepack: run the CPU matmuls on prepacked weights where faster (`sgnb.kernels.linear`).
    quantization: None (dense), "gguf" (a .gguf source's own Q4_0/Q4_1/Q8_0 blocks) or a qtype the projections
    are quantized to at load (`sgnb.engine.packed_weights`). cpu_kernels: run the C++ kernels (packed matmuls,
    fused ops); without them packed weights are dequantized at load into dense ones, the same values.
    """
    source = Path(source)
    if source.suffix == ".gguf":
        from sgnb.engine.gguf_loader import read_gguf

        gguf = read_gguf(source)
        cfg = ModelConfig.from_dict(gguf.config)
        tensors = gguf.tensors(packed=quantization == "gguf")
    elif quantization == "gguf":
        raise ValueError(f"quantization='gguf' needs a .gguf model source, got the folder {source}")
    else:
        cfg = ModelConfig.from_folder(source)
        tensors = iter_safetensors(source)
    family: type[CausalLM] = model_class(cfg.architecture)
    if family.config_type is not ModelConfig:
        cfg = family.config_type.from_dict(cfg.raw)
    with torch.device("meta"):
        model = family(cfg)
    # frozen before the kernels copy any weight (a prepacked copy keeps the flag it was made with)
    model = model.to_empty(device=device).requires_grad_(False)
    packed = _fill(model, tensors, dtype, source)
    model.packed_weights = finish_packing(model, packed, quantization, keep_packed=cpu_kernels)
    model.build_buffers(device)                # to_empty left the meta-built tables without values
    model.bind_kernels(prepack, get_fused_ops(True) if cpu_kernels else None)
    return model.eval(), cfg


def _fill(model: CausalLM, tensors: Iterator[tuple[str, torch.Tensor | PackedWeight]], dtype: torch.dtype,
          source: Path) -> dict[str, PackedWeight]:
    """Copy the checkpoint into the model's parameters; returns the packed weights it came with (a .gguf's
    blocks), by parameter name (`LM_HEAD` for the output projection), their parameters left empty."""
    params = dict(model.named_parameters())
    projections = set(model.projection_names())
    shards: dict[str, dict[int, torch.Tensor | PackedWeight]] = {}
    loaded: set[str] = set()
    packed: dict[str, PackedWeight] = {}

    def put(name: str, value: torch.Tensor | PackedWeight) -> None:
        param = params[name]
        if isinstance(value, PackedWeight) and param is model.lm_head_weight:
            packed[LM_HEAD] = value
        elif isinstance(value, PackedWeight) and name in projections:
            packed[name] = value
        if isinstance(value, PackedWeight) and name in projections:
            _check_shape(param, (value.out_features, value.in_features), name)
            param.data = torch.empty(0, dtype=dtype, device=param.device)   # packed: no dense copy alongside
        else:                           # dense, or a packed tied embedding: dense for the lookup too
            _copy(param, value.dequantize() if isinstance(value, PackedWeight) else value, name, dtype)
        loaded.add(name)

    for hf_name, tensor in tensors:
        target = model.checkpoint_name_map(hf_name)
        if target is None:
            continue                     # a tensor the model computes or shares (RoPE tables, tied LM head)
        name, shard = target
        if name not in params:
            raise ValueError(f"{source}: unexpected weight {hf_name!r} for {type(model).__name__}")
        if shard is None:
            put(name, tensor)
        else:
            shards.setdefault(name, {})[shard] = tensor
    for name, parts in shards.items():
        put(name, concat_parts([parts[i] for i in sorted(parts)]))
    missing = sorted(set(params) - loaded)
    if missing:
        raise ValueError(f"{source}: weights missing from the checkpoint: {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return packed


def _check_shape(param: torch.nn.Parameter, shape: tuple[int, ...], name: str) -> None:
    if tuple(param.shape) != tuple(shape):
        raise ValueError(f"weight {name}: shape {tuple(shape)} does not match the model's {tuple(param.shape)}")


def _copy(param: torch.nn.Parameter, tensor: torch.Tensor, name: str, dtype: torch.dtype) -> None:
    _check_shape(param, tensor.shape, name)
    with torch.no_grad():
        param.data = tensor.to(device=param.device, dtype=dtype).contiguous()
