"""Images in the views, from real programs on a tiny random-weight Idefics3: the program view's image segment
(a thumbnail over the placeholder, its rows marked cache or computed like other prompt tokens) and the cache
tree's image label."""

from __future__ import annotations

import pytest

from sgnb.widgets.cache_data import cache_data
from sgnb.widgets.program_data import program_data
from sgnb.widgets.static_html import cache_html, program_html
from sgnb.widgets.token_marks import mark_tokens
from tests.vlm_fixtures import ask_program, solid_image


@pytest.fixture
def backend(fresh_vlm_backend):
    return fresh_vlm_backend


ask = ask_program()


def image_rows(engine, snap: dict) -> int:
    """How many positions the image takes in the engine's prompt (its embedding rows and wrapper tokens)."""
    prompt = snap["text"][:snap["spans"][0]["start"]]
    return len(engine.image_processor.expand(prompt, [solid_image((200, 0, 0))]).input_ids) - \
        len(engine.tokenizer.encode(prompt)) + 1


def test_image_is_one_segment_with_its_thumbnail_and_rows_marked_like_the_prompt(backend, vlm_engine):
    cold = ask.run(image=solid_image((200, 0, 0)), question="Colour?", backend=backend).snapshot()
    warm = ask.run(image=solid_image((200, 0, 0)), question="Shape?", backend=backend).snapshot()
    for snap, kind in ((cold, "computed"), (warm, "cache")):
        segments = mark_tokens(snap, vlm_engine.tokenizer)
        (image,) = [s for s in segments if "thumbnail" in s]
        assert (image["start"], image["end"]) == (snap["images"][0]["start"], snap["images"][0]["end"])
        assert image["thumbnail"] == snap["images"][0]["thumbnail"] and image["thumbnail"].startswith("data:image/png")
        assert image["kind"] == kind and image["num_tokens"] == image_rows(vlm_engine, snap)
        meta = snap["spans"][0]["meta_info"]
        prompt = [s for s in segments if s["span"] is None and s["end"] <= snap["spans"][0]["start"]]
        assert sum(s["num_tokens"] for s in prompt if s["kind"] == "cache") == meta["cached_tokens"]
        assert sum(s["num_tokens"] for s in prompt) == meta["prompt_tokens"]


def test_static_program_view_draws_the_thumbnail_in_place_of_the_placeholder(backend, vlm_engine):
    state = ask.run(image=solid_image((0, 200, 0)), question="Colour?", backend=backend)
    thumbnail = state.snapshot()["images"][0]["thumbnail"]
    html = program_html(state.snapshot(), vlm_engine.tokenizer)
    assert f'<img src="{thumbnail}" alt="&lt;image&gt;"' in html
    totals = program_data(state.snapshot(), vlm_engine.tokenizer)["totals"]
    assert totals["computed"] == state.get_meta_info("answer")["prompt_tokens"]


def test_cache_tree_labels_the_node_holding_the_image(backend, vlm_engine):
    ask.run(image=solid_image((0, 0, 200)), question="Colour?", backend=backend)
    ask.run(image=solid_image((0, 0, 200)), question="Shape?", backend=backend)
    nodes = cache_data(vlm_engine.snapshot())["nodes"]
    with_image = [n for n in nodes if n["num_image_tokens"]]
    assert len(with_image) == 1  # the shared prefix: the questions split off after it
    processor = vlm_engine.image_processor
    (item,) = processor.expand("<image>", [solid_image((0, 0, 200))]).items
    assert with_image[0]["num_image_tokens"] == item.num_image_tokens
    assert f'image: {item.num_image_tokens} tok' in cache_html(vlm_engine.snapshot())
