"""Build a model and load its weights from an HF folder (safetensors) or a `.gguf` file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models import model_class
from sgnb.engine.models.base import CausalLM


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


def load_model(source: str | Path, dtype: torch.dtype, device: str,
               prepack: bool = True) -> tuple[CausalLM, ModelConfig]:
    """Instantiate the registered class for the source's architecture and fill its weights.

    Talks to the model only through `CausalLM` (see `sgnb.engine.models.base` for the sequence).
    prepack: run the CPU matmuls on prepacked weights where faster (`sgnb.kernels.linear`).
    """
    source = Path(source)
    if source.suffix == ".gguf":
        from sgnb.engine.gguf_loader import read_gguf

        gguf = read_gguf(source)
        cfg = ModelConfig.from_dict(gguf.config)
        tensors = gguf.tensors()
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
    _fill(model, tensors, dtype, source)
    model.build_buffers(device)                # to_empty left the meta-built tables without values
    model.bind_kernels(prepack)
    return model.eval(), cfg


def _fill(model: CausalLM, tensors: Iterator[tuple[str, torch.Tensor]], dtype: torch.dtype,
          source: Path) -> None:
    params = dict(model.named_parameters())
    shards: dict[str, dict[int, torch.Tensor]] = {}
    loaded: set[str] = set()
    for hf_name, tensor in tensors:
        target = model.checkpoint_name_map(hf_name)
        if target is None:
            continue                     # a tensor the model computes or shares (RoPE tables, tied LM head)
        name, shard = target
        if name not in params:
            raise ValueError(f"{source}: unexpected weight {hf_name!r} for {type(model).__name__}")
        if shard is None:
            _copy(params[name], tensor, name, dtype)
            loaded.add(name)
        else:
            shards.setdefault(name, {})[shard] = tensor
    for name, parts in shards.items():
        _copy(params[name], torch.cat([parts[i] for i in sorted(parts)], dim=0), name, dtype)
        loaded.add(name)
    missing = sorted(set(params) - loaded)
    if missing:
        raise ValueError(f"{source}: weights missing from the checkpoint: {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))


def _copy(param: torch.nn.Parameter, tensor: torch.Tensor, name: str, dtype: torch.dtype) -> None:
    if tuple(param.shape) != tuple(tensor.shape):
        raise ValueError(f"weight {name}: shape {tuple(tensor.shape)} does not match the model's {tuple(param.shape)}")
    with torch.no_grad():
        param.data = tensor.to(device=param.device, dtype=dtype).contiguous()
