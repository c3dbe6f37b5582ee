"""Images in the in-process engine, on tiny random-weight Idefics3 and LLaVA models (fp32, CPU).

Logits parity with transformers' full forward (same folder, same images): a prefill, extends from a cached
prefix that ends before, inside and after an image, decode steps, and prefill chunks smaller than one
image's span. Then the radix cache keyed by image, the image embedding cache, cache views, and bad input.
Every test ends with `check_integrity()` on each engine it used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from sgnb.engine import Engine

RTOL = 1e-3
GREEDY = {"temperature": 0, "ignore_eos": True}
PROMPTS = {
    "idefics3": "User:<image>{}<end_of_utterance>\nAssistant:",
    "llava": "USER: <image>\n{} ASSISTANT:",
}
QUESTION = "What is in the picture?"


def noise_image(seed: int, size: tuple[int, int] = (100, 70)) -> Image.Image:
    """A deterministic image whose every pixel differs (Idefics3 splits this size into 2x2 crops + global)."""
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, data)


def rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


@dataclass
class Reference:
    """transformers' model and processor on the same folder: the ground truth."""

    family: str
    model: torch.nn.Module
    processor: object

    @property
    def image_token_id(self) -> int:
        cfg = self.model.config
        return cfg.image_token_id if self.family == "idefics3" else cfg.image_token_index

    def inputs(self, prompt: str, images: list[Image.Image]) -> dict:
        batch_images = [images] if self.family == "idefics3" else images
        return dict(self.processor(text=[prompt], images=batch_images, return_tensors="pt"))

    def input_ids(self, prompt: str, images: list[Image.Image]) -> list[int]:
        return self.inputs(prompt, images)["input_ids"][0].tolist()

    def logprobs(self, prompt: str, images: list[Image.Image], extra_ids: list[int] = ()) -> torch.Tensor:
        """[seq_len, vocab] log-softmax of the full forward over the expanded prompt (+ extra_ids)."""
        inputs = self.inputs(prompt, images)
        ids = torch.cat([inputs["input_ids"], torch.tensor([list(extra_ids)], dtype=torch.long)], dim=1)
        inputs["input_ids"], inputs["attention_mask"] = ids, torch.ones_like(ids)
        with torch.no_grad():
            return torch.log_softmax(self.model(**inputs).logits[0].float(), dim=-1)

    def greedy(self, prompt: str, images: list[Image.Image], num_tokens: int) -> list[int]:
        inputs = self.inputs(prompt, images)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=num_tokens, do_sample=False, min_new_tokens=num_tokens)
        return out[0, inputs["input_ids"].shape[1]:].tolist()

    def image_rows(self, ids: list[int]) -> list[int]:
        return [i for i, t in enumerate(ids) if t == self.image_token_id]


@dataclass
class Vlm:
    family: str
    path: Path
    engine: Engine
    ref: Reference

    def prompt(self, question: str = QUESTION, num_images: int = 1) -> str:
        return PROMPTS[self.family].replace("<image>", "<image>" * num_images).format(question)


@pytest.fixture(scope="module", params=["idefics3", "llava"])
def vlm(request, tiny_vlm_folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family = request.param
    path = tiny_vlm_folder(family)
    ref = Reference(family, AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval(),
                    AutoProcessor.from_pretrained(path))
    engine = Engine(str(path), dtype="float32")
    yield Vlm(family, path, engine, ref)
    engine.check_integrity()
    engine.shutdown()


def input_logprobs(result: dict) -> tuple[torch.Tensor, list[int]]:
    entries = [e for e in result["meta_info"]["input_token_logprobs"] if e[0] is not None]
    return torch.tensor([lp for lp, _, _ in entries]), [t for _, t, _ in entries]


def test_engine_expands_prompts_like_the_hf_processor(vlm):
    assert vlm.engine.image_token == "<image>"
    image = noise_image(1)
    result = vlm.engine.score(vlm.prompt(), image_data=image, logprob_start_len=0)
    _, ids = input_logprobs(result)
    assert ids == vlm.ref.input_ids(vlm.prompt(), [image])[1:]
    assert result["meta_info"]["num_images"] == 1
    vlm.engine.check_integrity()


@pytest.mark.parametrize("where", ["prefill", "before", "inside", "after"])
def test_extend_from_cached_prefix_matches_transformers(vlm, where):
    """The cached prefix ends nowhere (a plain prefill), right before the image, inside it (mid-crop for
    Idefics3, whose later crops follow), or after it; the computed rows' logprobs match the full forward, and
    the encoder runs once in all (the second request's image rows come from the image cache, or not at all)."""
    engine, ref = vlm.engine, vlm.ref
    image = noise_image(2)
    prompt = vlm.prompt()
    ids = ref.input_ids(prompt, [image])
    rows = ref.image_rows(ids)
    split = {"prefill": 0, "before": rows[0], "inside": rows[len(rows) // 2 + 3], "after": rows[-1] + 2}[where]
    assert engine.flush_cache()
    before = engine.stats()
    if split:
        engine.score(prompt, image_data=image)                      # caches the whole prompt
    # input logprobs from split + 1 on: the cached prefix it may use ends at `split`
    result = engine.score(prompt, image_data=image, logprob_start_len=split + 1)
    assert result["meta_info"]["cached_tokens"] == split
    ours, targets = input_logprobs(result)
    assert targets == ids[split + 1:]
    theirs = ref.logprobs(prompt, [image])[torch.arange(split, len(ids) - 1), ids[split + 1:]]
    assert rel_err(ours, theirs) <= RTOL
    after = engine.stats()
    assert after["num_image_encodes"] == before["num_image_encodes"] + 1
    reused = split > 0 and split <= rows[-1]                     # the second request computes image rows
    assert after["num_image_cache_hits"] == before["num_image_cache_hits"] + reused
    engine.check_integrity()


def test_greedy_decode_matches_transformers(vlm):
    engine, ref = vlm.engine, vlm.ref
    image = noise_image(3)
    prompt = vlm.prompt("Describe it.")
    result = engine.generate(prompt, {**GREEDY, "max_new_tokens": 5}, image_data=image, return_logprob=True)
    out = result["output_ids"]
    assert out == ref.greedy(prompt, [image], 5)
    ids = ref.input_ids(prompt, [image])
    theirs = ref.logprobs(prompt, [image], out[:-1])[torch.arange(len(ids) - 1, len(ids) + 4), out]
    ours = torch.tensor([lp for lp, _, _ in result["meta_info"]["output_token_logprobs"]])
    assert rel_err(ours, theirs) <= RTOL
    engine.check_integrity()


@pytest.fixture(scope="module")
def small_engine(vlm):
    """Prefill chunks of 6 tokens (less than one image's span); a context a little longer than one image."""
    image = noise_image(0)
    context = len(vlm.ref.input_ids(vlm.prompt(), [image])) + 8
    engine = Engine(str(vlm.path), dtype="float32", max_prefill_tokens=6, max_context_len=context)
    yield engine
    engine.check_integrity()
    engine.shutdown()


def test_prefill_chunks_cut_through_an_image_and_match_transformers(vlm, small_engine):
    ref = vlm.ref
    image = noise_image(4)
    prompt = vlm.prompt()
    ids = ref.input_ids(prompt, [image])
    assert len(ref.image_rows(ids)) > 6
    result = small_engine.score(prompt, image_data=image, logprob_start_len=1)
    ours, targets = input_logprobs(result)
    assert targets == ids[1:]
    theirs = ref.logprobs(prompt, [image])[torch.arange(len(ids) - 1), ids[1:]]
    assert rel_err(ours, theirs) <= RTOL
    stats = small_engine.stats()
    assert stats["num_image_encodes"] == 1                 # later chunks take their slice from the image cache
    assert stats["num_image_cache_hits"] >= 2
    generated = small_engine.generate(vlm.prompt("Describe it."), {**GREEDY, "max_new_tokens": 3}, image_data=image)
    assert generated["output_ids"] == ref.greedy(vlm.prompt("Describe it."), [image], 3)
    small_engine.check_integrity()


def test_same_image_reuses_its_kv_and_different_images_share_none(vlm):
    engine, ref = vlm.engine, vlm.ref
    first, second = noise_image(5), noise_image(6)
    q1, q2 = vlm.prompt("What color is it?"), vlm.prompt("How big is it?")
    ids1, ids2 = ref.input_ids(q1, [first]), ref.input_ids(q2, [first])
    rows = ref.image_rows(ids1)
    assert engine.flush_cache()
    engine.generate(q1, {**GREEDY, "max_new_tokens": 2}, image_data=first)
    before = engine.stats()
    same = engine.generate(q2, {**GREEDY, "max_new_tokens": 2}, image_data=first)
    common = next(i for i, (a, b) in enumerate(zip(ids1, ids2)) if a != b)
    assert same["meta_info"]["cached_tokens"] == common > rows[-1]
    after = engine.stats()
    assert (after["num_image_encodes"], after["num_image_cache_hits"]) == (
        before["num_image_encodes"], before["num_image_cache_hits"])
    other = engine.generate(q1, {**GREEDY, "max_new_tokens": 2}, image_data=second)
    assert other["meta_info"]["cached_tokens"] == rows[0]          # the text before the image, no image row
    assert engine.stats()["num_image_encodes"] == after["num_image_encodes"] + 1
    engine.check_integrity()


@pytest.mark.parametrize("image_cache_mb, num_encodes", [(256.0, 1), (0, 2)])
def test_image_cache_spares_the_encoder_without_a_radix_cache(vlm, image_cache_mb, num_encodes):
    """No prefix cache: the second request with the same image computes its rows again, from the image
    cache's embedding when one is kept."""
    engine = Engine(str(vlm.path), dtype="float32", radix_cache=False, image_cache_mb=image_cache_mb)
    try:
        image = noise_image(14)
        prompts = [vlm.prompt("What color is it?"), vlm.prompt("How big is it?")]
        for prompt in prompts:
            result = engine.generate(prompt, {**GREEDY, "max_new_tokens": 2}, image_data=image)
            assert result["meta_info"]["cached_tokens"] == 0
            assert result["output_ids"] == vlm.ref.greedy(prompt, [image], 2)
        stats = engine.stats()
        assert (stats["num_image_encodes"], stats["num_image_cache_hits"]) == (num_encodes, 2 - num_encodes)
        engine.check_integrity()
    finally:
        engine.shutdown()


def test_negative_image_cache_size_is_refused():
    with pytest.raises(ValueError, match="image_cache_mb must be >= 0"):
        Engine("smollm2-135m", image_cache_mb=-1)         # refused before any model loads


def test_cache_views_label_image_rows(vlm):
    """Two images after the same text: the tree branches at the first image row; each branch counts its
    image rows and reads "[image]" where they sit, in excerpts and in node texts."""
    engine, ref = vlm.engine, vlm.ref
    images = [noise_image(7), noise_image(8)]
    prompt = vlm.prompt("What color is it?")
    assert engine.flush_cache()
    results = engine.generate([prompt, prompt], {**GREEDY, "max_new_tokens": 1}, image_data=images)
    assert [r["meta_info"]["num_images"] for r in results] == [1, 1]
    rows = ref.image_rows(ref.input_ids(prompt, images[:1]))
    num_runs = 1 + sum(b != a + 1 for a, b in zip(rows, rows[1:]))        # runs of image rows (spans)
    nodes = engine.snapshot()["cache"]["nodes"]
    labelled = [n for n in nodes if "num_image_tokens" in n]
    assert [n["num_image_tokens"] for n in labelled] == [len(rows), len(rows)]
    for node in labelled:
        assert node["depth_tokens"] - node["num_tokens"] == rows[0]      # the branch starts at the image
        assert node["text"].startswith("[image]")
        text = engine.node_text(node["id"])["text"]
        assert text.count("[image]") == num_runs and "What color is it?" in text     # Idefics3: one per crop
    engine.check_integrity()


def test_text_prompts_and_image_batches_run_side_by_side(vlm):
    engine, ref = vlm.engine, vlm.ref
    images = [noise_image(9), noise_image(10)]
    prompts = [vlm.prompt("Describe it.", num_images=2), "Hello there, how are you?", vlm.prompt("Describe it.")]
    results = engine.generate(prompts, {**GREEDY, "max_new_tokens": 3}, image_data=[images, None, images[1]])
    assert [r["meta_info"]["num_images"] for r in results] == [2, 0, 1]
    assert results[0]["output_ids"] == ref.greedy(prompts[0], images, 3)
    assert results[2]["output_ids"] == ref.greedy(prompts[2], images[1:], 3)
    engine.check_integrity()


def test_token_id_prompt_expands_its_image_placeholder_tokens(vlm):
    engine = vlm.engine
    image = noise_image(13)
    prompt = vlm.prompt("Describe it.")
    from_text = engine.generate(prompt, {**GREEDY, "max_new_tokens": 3}, image_data=image)
    ids = engine.tokenizer.encode(prompt)
    assert ids.count(engine.tokenizer.convert_tokens_to_ids(engine.image_token)) == 1
    from_ids = engine.generate(input_ids=ids, sampling_params={**GREEDY, "max_new_tokens": 3}, image_data=[image])
    assert from_ids["output_ids"] == from_text["output_ids"]
    assert from_ids["meta_info"]["prompt_tokens"] == from_text["meta_info"]["prompt_tokens"] > len(ids)
    engine.check_integrity()


@pytest.mark.parametrize("case, match", [
    ("corrupt", "image"),
    ("more_images", "1 image placeholders .* but 2 images"),
    ("fewer_images", "2 image placeholders .* but 1 images"),
    ("placeholder_without_image", "1 image placeholder token.* no image_data"),
    ("batch_entries", "image_data for a batch of 2 prompts"),
    ("too_long", "longer than the context"),
])
def test_bad_image_input_is_refused_at_submission(vlm, small_engine, case, match):
    engine = small_engine
    image = noise_image(11)
    prompt = vlm.prompt()
    kwargs = {
        "corrupt": dict(prompt=prompt, image_data=b"\x89PNG\r\n\x1a\n not really a png"),
        "more_images": dict(prompt=prompt, image_data=[image, image]),
        "fewer_images": dict(prompt=vlm.prompt(num_images=2), image_data=[image]),
        "placeholder_without_image": dict(prompt=prompt),
        "batch_entries": dict(prompt=[prompt, prompt], image_data=[image]),
        "too_long": dict(prompt=vlm.prompt(num_images=2), image_data=[image, noise_image(12)]),
    }[case]
    with pytest.raises(ValueError, match=match):
        engine.generate(sampling_params={**GREEDY, "max_new_tokens": 1}, **kwargs)
    assert engine.stats()["num_waiting"] == 0
    result = engine.generate(prompt, {**GREEDY, "max_new_tokens": 2}, image_data=image)   # still serving
    assert result["meta_info"]["completion_tokens"] == 2
    engine.check_integrity()


def test_text_only_model_refuses_images(tmp_path, smollm2_path):
    from tests.conftest import make_tiny_model

    engine = Engine(str(make_tiny_model(tmp_path, smollm2_path)), dtype="float32")
    try:
        assert engine.image_token is None
        with pytest.raises(ValueError, match="text-only"):
            engine.generate("Look: <image>", {"max_new_tokens": 1}, image_data=noise_image(0))
        assert engine.generate("Hello", {**GREEDY, "max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2
        engine.check_integrity()
    finally:
        engine.shutdown()
