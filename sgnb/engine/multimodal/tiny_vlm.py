"""Tiny random-weight vision-language models, for tests and for the notebook's no-download fallback.

`build_tiny_vlm(path, family)` writes an HF folder that transformers (`AutoModelForImageTextToText`,
`AutoProcessor`) and sgnb's own loader both read: a nested `text_config` (a Llama of 64 hidden units,
2 layers) and `vision_config` (a 2-layer vision tower on 32-64 px images), random weights in safetensors,
SmolLM2's tokenizer with the family's image tokens added, and the family's processor config with image sizes
small enough that an image is a few dozen tokens.

- "idefics3": SigLIP-style tower (64 px, 8 px patches), pixel shuffle by 2, a linear connector: 16 tokens
  per crop; images split into up to 2x2 crops of 64 px plus the global image (at most 80 tokens).
- "llava": CLIP tower (32 px, 8 px patches, a class token), a 2-layer MLP projector, features of the
  second-to-last layer without the class token: 16 tokens per image.
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("idefics3", "llava")

# the text model both families share: SmolLM2's layer layout at toy size
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
# Idefics3's wrapper tokens: crops are "<fake_token_around_image><row_i_col_j><image>*n", the global image
# "<fake_token_around_image><global-img><image>*n<fake_token_around_image>"
_IDEFICS3_TOKENS = (["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
                    + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)])
WEIGHT_STD = 0.2                 # larger than HF's init, so that a wrong op shows in the logits


def build_tiny_vlm(path: Path, family: str = "idefics3", seed: int = 0, text_overrides: dict | None = None,
                   **config_overrides) -> Path:
    """Write a random-weight `family` model ("idefics3" or "llava") to `path`; the same seed gives the
    same weights. text_overrides: fields of the text model's LlamaConfig (e.g. a real model's shape);
    config_overrides: keyword arguments of the family's HF config (e.g. LLaVA's `vision_feature_layer`).
    Returns `path`."""
    import torch
    import transformers
    from transformers import AutoTokenizer, LlamaConfig

    from sgnb.engine.model_store import resolve_model

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    tokenizer.add_special_tokens({"additional_special_tokens": _IDEFICS3_TOKENS if family == "idefics3"
                                  else ["<image>"]})
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    text = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       **(_TEXT | (text_overrides or {})))
    if family == "idefics3":
        vision = transformers.Idefics3VisionConfig(image_size=64, patch_size=8, **_VISION)
        config = transformers.Idefics3Config(**{
            "text_config": text, "vision_config": vision, "scale_factor": 2, "image_token_id": image_token_id,
            "tie_word_embeddings": False, **config_overrides})
        model_cls = transformers.Idefics3ForConditionalGeneration
        image_processor = transformers.Idefics3ImageProcessorPil(
            size={"longest_edge": 128}, max_image_size={"longest_edge": 64}, do_image_splitting=True)
        processor = transformers.Idefics3Processor(image_processor, tokenizer, image_seq_len=16)
    else:
        vision = transformers.CLIPVisionConfig(image_size=32, patch_size=8, **_VISION)
        config = transformers.LlavaConfig(**{
            "text_config": text, "vision_config": vision, "image_token_index": image_token_id,
            "image_seq_length": 16, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
            "tie_word_embeddings": False, **config_overrides})
        model_cls = transformers.LlavaForConditionalGeneration
        image_processor = transformers.LlavaImageProcessorPil(size={"shortest_edge": 32},
                                                              crop_size={"height": 32, "width": 32})
        processor = transformers.LlavaProcessor(image_processor, tokenizer, patch_size=8,
                                                vision_feature_select_strategy=config.vision_feature_select_strategy,
                                                num_additional_image_tokens=1)
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = model_cls(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.copy_(torch.randn(param.shape, generator=generator) * WEIGHT_STD)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
