"""Images benchmark (issue 15): 8 questions about one picture, radix cache on against off, in one run.

With the radix cache on, the picture's rows (keyed by the image's hash) are computed once and every later question
starts past them; the vision encoder runs once. Off, every program prefills the picture again; the image-embedding
LRU (`image_cache_mb`) still spares the encoder, so a third system turns that off too, to show the encoder calls
the caches save. Prints programs/s per system, the ratio against radix off, and the encoder calls
(`stats()["num_image_encodes"]`).

The model is a random-weight Idefics3 built with `build_tiny_vlm`, with a bigger vision tower than the test one
(so that encoding costs something); timings are for this toy model on this machine, not for a real SmolVLM.

    .venv/bin/python bench/images.py [--num-questions 8] [--max-tokens 8] [--dtype float32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isolate import run_alone  # noqa: E402

QUESTIONS = ["What colour is the ball?", "What is at the bottom?", "Is it day or night?", "How many balls are there?",
             "Where is the ball?", "What shape is the ball?", "What colour is the sky?", "Is there any grass?"]
# a vision tower that costs something per crop: 8 layers of 384 units on 64 px crops of 8 px patches
VISION = dict(image_size=64, patch_size=8, hidden_size=384, intermediate_size=1536, num_hidden_layers=8,
              num_attention_heads=6)
# the text model in SmolVLM-256M's shape (SmolLM2-135M's), so reusing the prompt's KV saves real work
TEXT = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3)
SYSTEMS = (("radix cache on", {"radix_cache": True}),
           ("radix cache off", {"radix_cache": False}),
           ("radix off, no image-embedding cache", {"radix_cache": False, "image_cache_mb": 0.0}))


def build_model(folder: Path, text: dict | None = TEXT) -> Path:
    """The benchmark's model; `text=None` keeps the toy text model (the smoke test's)."""
    import transformers

    from sgnb.engine.multimodal.tiny_vlm import build_tiny_vlm

    return build_tiny_vlm(folder, "idefics3", text_overrides=text,
                          vision_config=transformers.Idefics3VisionConfig(**VISION))


def picture():
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (256, 192), "skyblue")
    draw = ImageDraw.Draw(image)
    draw.ellipse((96, 40, 160, 104), fill="red")
    draw.rectangle((0, 150, 256, 192), fill="forestgreen")
    return image


def run_system(model: Path, options: dict, questions: list[str], max_tokens: int, dtype: str) -> dict:
    import sgnb as sgl
    from sgnb.engine import Engine

    @sgl.function
    def ask(s, image, question):
        s += sgl.user(sgl.image(image) + question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=max_tokens, ignore_eos=True, temperature=0))

    image = picture()
    with Engine(str(model), dtype=dtype, **options) as engine:
        backend = sgl.EngineBackend(engine=engine)
        ask.run(image=picture().rotate(90), question="warm up", backend=backend)  # another picture: no reuse
        engine.flush_cache()
        encodes_before = engine.stats()["num_image_encodes"]
        t0 = time.perf_counter()
        for question in questions:  # one after another, as a notebook asks them
            state = ask.run(image=image, question=question, backend=backend)
            assert state.error() is None, state.error()
        elapsed = time.perf_counter() - t0
        stats = engine.stats()
        engine.check_integrity()
    return {"seconds": elapsed, "programs_per_s": len(questions) / elapsed,
            "encodes": stats["num_image_encodes"] - encodes_before, "hit_rate": stats["cache_hit_rate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-questions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=3, help="runs per system, interleaved (median reported)")
    args = parser.parse_args()
    if args.num_questions < 1 or args.max_tokens < 1 or args.repeats < 1:
        parser.error("--num-questions, --max-tokens and --repeats must be >= 1")
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.num_questions)]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp) / "bench-idefics3")
        print(f"model: random-weight Idefics3 (vision tower {VISION['num_hidden_layers']} layers x "
              f"{VISION['hidden_size']}, text model SmolLM2-135M's shape), {args.dtype}; {len(questions)} "
              f"questions about one picture, {args.max_tokens} answer tokens each; median of {args.repeats}")
        runs: dict[str, list[dict]] = {name: [] for name, _ in SYSTEMS}
        for _ in range(args.repeats):           # interleaved: a noisy stretch hits every system alike
            for name, options in SYSTEMS:
                runs[name].append(run_alone(
                    lambda o=options: run_system(model, o, questions, args.max_tokens, args.dtype)))
        results = {name: sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2] for name, rs in runs.items()}
    baseline = results["radix cache off"]
    for name, r in results.items():
        print(f"{name:38} {r['programs_per_s']:6.2f} programs/s ({r['seconds']:.2f} s)  "
              f"x{r['programs_per_s'] / baseline['programs_per_s']:.2f} vs radix off  "
              f"encoder calls {r['encodes']:2}  hit rate {r['hit_rate']:.2f}")
    on, bare = results["radix cache on"], results["radix off, no image-embedding cache"]
    print(f"radix cache on: x{on['programs_per_s'] / baseline['programs_per_s']:.2f} programs/s against radix off, "
          f"x{on['programs_per_s'] / bare['programs_per_s']:.2f} against no cache at all; "
          f"encoder calls saved: {bare['encodes'] - on['encodes']} of {bare['encodes']}")


if __name__ == "__main__":
    main()
