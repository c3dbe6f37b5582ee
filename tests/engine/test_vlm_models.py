"""Idefics3 and LLaVA in our model code against transformers, on tiny random-weight models (fp32).

Model-level, no engine: `encode_images` against HF's image features, and the whole model's logits through
the paged KV pool (a prefill, an extend from a cached prefix that ends before, inside or after an image,
decode steps) against HF's forward over the same prompt and images.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from sgnb.engine.attention import AttentionContext, ForwardMode
from sgnb.engine.kv_cache import KVPool
from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models import model_class
from sgnb.engine.models.base import VisionLanguageModel
from sgnb.engine.models.idefics3 import pixel_shuffle
from sgnb.engine.multimodal.tiny_vlm import build_tiny_vlm
from sgnb.engine.weights import load_model
from sgnb.kernels import get_attention_ops

RTOL = 1e-3
FAMILIES = ("idefics3", "llava")


def noise_image(seed: int, size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


# Idefics3 splits the first into 2x2 crops plus the global image, the second is one crop plus the global one
IMAGES = [noise_image(1, (100, 70)), noise_image(2, (40, 52))]


def rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


@pytest.fixture(scope="module")
def tiny_vlms(tiny_vlm_folder) -> dict[str, Path]:
    """family -> the session's tiny folder of it (read only)."""
    return {family: tiny_vlm_folder(family) for family in FAMILIES}


@pytest.fixture(scope="module")
def loaded(tiny_vlms) -> dict[str, tuple[VisionLanguageModel, torch.nn.Module, object]]:
    """family -> (our model, transformers' model, its processor), each loaded once."""
    return {family: (load_model(folder, torch.float32, "cpu")[0], *_hf(folder)) for family, folder in tiny_vlms.items()}


def _hf(folder: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return (AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval(),
            AutoProcessor.from_pretrained(folder))


def _pixels(processor, text: str, images: list[Image.Image]) -> dict[str, torch.Tensor]:
    return dict(processor(text=[text], images=[images], return_tensors="pt"))


def _hf_image_features(hf, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """HF's projected features of every image in `inputs`, in prompt order: [num_image_tokens, hidden]."""
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        return torch.cat(list(hf.model.get_image_features(**extra).pooler_output)).detach()


def _encode_each(model: VisionLanguageModel, processor, images: list[Image.Image]) -> torch.Tensor:
    """Our `encode_images`, one image at a time (its own processor output, as the engine gets it), in order."""
    rows = []
    for image in images:
        inputs = _pixels(processor, processor.image_token, [image])
        if "pixel_attention_mask" in inputs:           # Idefics3: [1, num_crops, ...] -> the image's crops
            rows.append(model.encode_images(inputs["pixel_values"][0],
                                            pixel_attention_mask=inputs["pixel_attention_mask"][0]))
        else:
            rows.append(model.encode_images(inputs["pixel_values"]))
    return torch.cat(rows)


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_images_matches_transformers_for_one_and_two_images(loaded, family):
    model, hf, processor = loaded[family]
    tok = processor.image_token
    for images in (IMAGES[:1], IMAGES):
        ours = _encode_each(model, processor, images)
        theirs = _hf_image_features(hf, _pixels(processor, f"Look {tok} " * len(images), images))
        assert ours.shape == theirs.shape and not ours.requires_grad      # loaded frozen, prepacked copies too
        assert rel_err(ours, theirs) < RTOL
    if family == "idefics3":          # 2x2 crops + the global image, 16 tokens each
        assert len(_encode_each(model, processor, IMAGES[:1])) == 5 * 16


def test_idefics3_masks_padding_patches_like_transformers(loaded):
    """Crops padded past their real pixels: padding patches get position 0 and no attention, as in HF."""
    model, hf, _ = loaded["idefics3"]
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(2, 64, 64, dtype=torch.bool)
    mask[0, :40, :56] = True                     # 5 x 7 real patches of 8 x 8
    mask[1, :64, :24] = True
    pixels[~mask[:, None].expand_as(pixels)] = 0.0
    ours = model.encode_images(pixels, pixel_attention_mask=mask)
    theirs = _hf_image_features(hf, {"pixel_values": pixels[None], "pixel_attention_mask": mask[None]})
    assert rel_err(ours, theirs) < RTOL
    assert rel_err(ours, model.encode_images(pixels)) > 0.01       # the mask matters


def _paged_logits(model: VisionLanguageModel, ids: list[int], embeds: torch.Tensor, split: int,
                  num_decode: int) -> torch.Tensor:
    """Our model over a paged KV pool, the way the engine drives it: positions [0, split) as one extend,
    [split, n - num_decode) as an extend from that cached prefix (input embeddings, image rows included),
    then one decode step per remaining token (a text token: no input embeddings). Returns the logits of
    positions split .. n - 1."""
    cfg, n = model.cfg, len(ids)
    pool = KVPool(cfg, num_slots=n + 1, dtype=torch.float32, device="cpu")
    slots = torch.arange(1, n + 1)                     # slot 0 is the pool's padding slot
    ops = get_attention_ops("torch", "cpu")
    ids_t = torch.tensor(ids)

    def step(mode: ForwardMode, lo: int, hi: int) -> torch.Tensor:
        kv_end = lo if mode is ForwardMode.EXTEND else hi
        ctx = AttentionContext(mode=mode, ops=ops, k_buffers=pool.k_buffers, v_buffers=pool.v_buffers,
                               out_cache_loc=slots[lo:hi], qo_indptr=torch.tensor([0, hi - lo]),
                               kv_indptr=torch.tensor([0, kv_end]), kv_indices=slots[:kv_end],
                               sm_scale=cfg.head_dim ** -0.5)
        embeds_in = embeds[lo:hi] if mode is ForwardMode.EXTEND else None
        with torch.no_grad():
            return model(ids_t[lo:hi], torch.arange(lo, hi), ctx, input_embeds=embeds_in)

    step(ForwardMode.EXTEND, 0, split)
    out = [step(ForwardMode.EXTEND, split, n - num_decode)]
    out += [step(ForwardMode.DECODE, pos, pos + 1) for pos in range(n - num_decode, n)]
    return torch.cat(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers_through_the_paged_pool(loaded, family):
    model, hf, processor = loaded[family]
    tok = processor.image_token
    inputs = _pixels(processor, f"Look: {tok} and then {tok}. Which one is brighter, and why is it so?", IMAGES)
    ids = inputs["input_ids"][0].tolist() + [504, 3575, 282]           # three decode steps after the prompt
    with torch.no_grad():
        ref = hf(**{**inputs, "input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids))}
                 ).logits[0]
        is_image = torch.tensor(ids) == model.image_token_id
        embeds = model.embed_tokens(torch.tensor(ids))
        embeds[is_image] = _encode_each(model, processor, IMAGES)
    image_pos = is_image.nonzero().flatten().tolist()
    first, last = image_pos[0], image_pos[-1]
    # a cached prefix ending before the first image, inside it, and after the last image
    for split in (first - 1, first + 5, last + 2):
        ours = _paged_logits(model, ids, embeds, split, num_decode=3)
        assert rel_err(ours, ref[split:]) < RTOL, f"split at {split}"
        assert rel_err(ours[-3:], ref[-3:]) < RTOL, "decode steps"


def test_llava_concatenates_feature_layers_and_keeps_the_class_token(tmp_path):
    folder = build_tiny_vlm(tmp_path / "llava", "llava", seed=1, vision_feature_layer=[-3, -1],
                            vision_feature_select_strategy="full")
    model, _ = load_model(folder, torch.float32, "cpu")
    hf, processor = _hf(folder)
    ours = _encode_each(model, processor, IMAGES)
    assert ours.shape == (2 * 17, model.cfg.hidden_size)                 # 16 patches + the class token each
    assert rel_err(ours, _hf_image_features(hf, _pixels(processor, "<image><image>", IMAGES))) < RTOL


def test_llava_loads_the_checkpoint_layouts_of_llava_hf_and_transformers(tiny_vlms, loaded, tmp_path):
    """Saved names `language_model.model.*` / `vision_tower.*` (transformers' save), `model.language_model.*`
    (its module names) and `vision_tower.vision_model.*` (llava-hf checkpoints) load the same weights."""
    from safetensors.torch import load_file, save_file

    source = tiny_vlms["llava"]
    tensors = load_file(source / "model.safetensors")
    reference = loaded["llava"][0]
    renames = [("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
               ("vision_tower.", "model.vision_tower.vision_model."),
               ("multi_modal_projector.", "model.multi_modal_projector.")]
    folder = tmp_path / "renamed"
    folder.mkdir()
    (folder / "config.json").write_text((source / "config.json").read_text())
    renamed = {}
    for name, tensor in tensors.items():
        new = next((new + name.removeprefix(old) for old, new in renames if name.startswith(old)), name)
        renamed[new] = tensor
    renamed["model.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(17)[None]
    assert set(renamed) != set(tensors)
    save_file(renamed, folder / "model.safetensors")
    model, _ = load_model(folder, torch.float32, "cpu")
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_pixel_shuffle_folds_each_block_of_patches_into_one_row():
    side, dim = 4, 3
    x = torch.arange(side * side * dim, dtype=torch.float32).view(1, side * side, dim)   # patch p: p*3 .. p*3+2
    out = pixel_shuffle(x, 2)
    assert out.shape == (1, 4, 4 * dim)
    # row 1 is the block at patch rows 0-1, columns 2-3: patches 2, 3, 6, 7
    assert out[0, 1].tolist() == x[0, [2, 3, 6, 7]].flatten().tolist()
    with pytest.raises(ValueError, match="square grid"):
        pixel_shuffle(torch.zeros(1, 12, dim), 2)


def _config(tiny_vlms, family: str, **changes) -> ModelConfig:
    raw = json.loads((tiny_vlms[family] / "config.json").read_text())
    return ModelConfig.from_dict({**raw, **changes})


def test_nested_config_takes_the_text_model_shape_and_the_outer_name(tiny_vlms):
    cfg = _config(tiny_vlms, "idefics3")
    assert cfg.architecture == "Idefics3ForConditionalGeneration"
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.num_kv_heads) == (49192, 64, 2, 2)
    assert cfg.max_context_len == 2048 and cfg.rms_norm_eps == 1e-5
    assert cfg.raw["vision_config"]["image_size"] == 64
    assert _config(tiny_vlms, "llava", tie_word_embeddings=True).tie_word_embeddings


@pytest.mark.parametrize(("family", "changes", "message"), [
    ("idefics3", {"scale_factor": 3}, "scale_factor"),
    ("llava", {"vision_feature_select_strategy": "spatial"}, "vision_feature_select_strategy"),
    ("llava", {"vision_feature_layer": 3}, "vision_feature_layer"),
    ("llava", {"projector_hidden_act": "swish"}, "projector_hidden_act"),
])
def test_unsupported_vlm_configs_are_refused_naming_the_key(tiny_vlms, family, changes, message):
    cfg = _config(tiny_vlms, family, **changes)
    with torch.device("meta"), pytest.raises(ValueError, match=message):
        model_class(cfg.architecture)(cfg)


def test_smolvlm_is_the_idefics3_family():
    assert model_class("SmolVLMForConditionalGeneration") is model_class("Idefics3ForConditionalGeneration")
    assert model_class("SmolVLMForConditionalGeneration").is_multimodal
    assert not model_class("LlamaForCausalLM").is_multimodal
