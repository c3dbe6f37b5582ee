"""Model registry: HF `architectures` name -> model class. A new family is one new file here."""

from __future__ import annotations

import importlib

_REGISTRY: dict[str, str] = {
    "LlamaForCausalLM": "sgnb.engine.models.llama:LlamaForCausalLM",
    "MistralForCausalLM": "sgnb.engine.models.llama:LlamaForCausalLM",
    "Qwen2ForCausalLM": "sgnb.engine.models.llama:LlamaForCausalLM",
    "Qwen3ForCausalLM": "sgnb.engine.models.qwen3:Qwen3ForCausalLM",
    "Idefics3ForConditionalGeneration": "sgnb.engine.models.idefics3:Idefics3ForConditionalGeneration",
    "SmolVLMForConditionalGeneration": "sgnb.engine.models.idefics3:Idefics3ForConditionalGeneration",
    "LlavaForConditionalGeneration": "sgnb.engine.models.llava:LlavaForConditionalGeneration",
}


def register(architecture: str, target: str) -> None:
    """Register `module:Class` for an HF architecture name."""
    _REGISTRY[architecture] = target


def model_class(architecture: str):
    try:
        module, cls = _REGISTRY[architecture].split(":")
    except KeyError:
        raise ValueError(f"model architecture {architecture!r} is not supported "
                         f"(supported: {', '.join(sorted(_REGISTRY))})") from None
    return getattr(importlib.import_module(module), cls)


def supported_architectures() -> list[str]:
    return sorted(_REGISTRY)
