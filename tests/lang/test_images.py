"""Programs with `sgl.image` and `sgl.video` on the engine backend, over a tiny random-weight Idefics3: where the
placeholder sits, the image's KV reused across questions, `select` and `fork` with an image, video frames as
images, and the chat messages' content parts."""

from __future__ import annotations

import base64
import io

import pytest

import sgnb as sgl
from sgnb.lang.image_part import THUMBNAIL_SIZE
from tests.vlm_fixtures import ask_program, solid_image

RED, BLUE = (220, 20, 20), (20, 20, 220)


@pytest.fixture
def backend(fresh_vlm_backend):
    return fresh_vlm_backend


ask = ask_program()


def image_rows(engine, state, image) -> tuple[int, int]:
    """Where the image's embedding rows start and end in the engine's prompt of the state's first gen/select."""
    prompt = state.text()[:state.snapshot()["spans"][0]["start"]]
    spans = engine.image_processor.expand(prompt, [image]).items[0].spans
    return spans[0][0], spans[-1][0] + spans[-1][1]


def test_image_placeholder_sits_in_the_user_turn_as_the_chat_template_puts_it(backend, vlm_engine):
    state = ask.run(image=solid_image(RED), question="What colour is it?", backend=backend)
    assert state.error() is None
    expected = vlm_engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": vlm_engine.image_token + "What colour is it?"}], tokenize=False,
        add_generation_prompt=True)
    assert state.text().startswith(expected)
    assert state.get_meta_info("answer")["num_images"] == 1


def test_a_second_question_about_the_same_image_reuses_its_kv_and_skips_the_encoder(backend, vlm_engine):
    first = ask.run(image=solid_image(RED), question="What colour is it?", backend=backend)
    encodes = vlm_engine.stats()["num_image_encodes"]
    second = ask.run(image=solid_image(RED), question="Is it round?", backend=backend)
    assert first.error() is None and second.error() is None
    assert second.get_meta_info("answer")["cached_tokens"] >= image_rows(vlm_engine, second, solid_image(RED))[1]
    assert vlm_engine.stats()["num_image_encodes"] == encodes
    other = ask.run(image=solid_image(BLUE), question="Is it round?", backend=backend)
    first_row = image_rows(vlm_engine, other, solid_image(BLUE))[0]
    assert other.get_meta_info("answer")["cached_tokens"] <= first_row  # a different image shares no image row
    assert vlm_engine.stats()["num_image_encodes"] == encodes + 1


def test_a_streamed_gen_with_an_image_gives_the_same_answer(backend):
    state = ask.run(image=solid_image(BLUE), question="Colour?", backend=backend, stream=True)
    pieces = list(state.text_iter("answer"))
    assert state.error() is None and pieces
    assert "".join(pieces) == state["answer"] == ask.run(image=solid_image(BLUE), question="Colour?",
                                                         backend=backend)["answer"]


def test_select_with_an_image_scores_each_choice_on_its_own_tokens(backend, vlm_engine):
    @sgl.function
    def pick(s, image):
        s += sgl.user(sgl.image(image) + "Which colour?")
        s += sgl.assistant(sgl.select("colour", choices=["red", "blue", "green"]))

    state = pick.run(image=solid_image(RED), backend=backend)
    assert state.error() is None
    meta = state.get_meta_info("colour")
    prompt = state.text()[:state.snapshot()["spans"][0]["start"]]
    for choice, scored in zip(["red", "blue", "green"], meta["input_token_logprobs"]):
        # the same prompt scored from its first token on: the choice's entries are the last ones
        full = vlm_engine.score(prompt=prompt + choice, image_data=solid_image(RED), logprob_start_len=0)
        tail = full["meta_info"]["input_token_logprobs"][-len(scored):]
        assert [e[1] for e in scored] == [e[1] for e in tail]
        assert [e[0] for e in scored] == pytest.approx([e[0] for e in tail], abs=1e-4)
        assert "".join(e[2] for e in scored).endswith(choice)


def test_forks_share_the_image_prefix(backend, vlm_engine):
    @sgl.function
    def two_views(s, image):
        s += sgl.user(sgl.image(image) + "Describe it.")
        forks = s.fork(2)
        forks += sgl.assistant(sgl.gen("view", max_tokens=3))
        forks.join()

    encodes = vlm_engine.stats()["num_image_encodes"]
    state = two_views.run(image=solid_image(BLUE), backend=backend)
    assert state.error() is None
    assert vlm_engine.stats()["num_image_encodes"] == encodes + 1  # the fork point's commit encoded it once
    for child in state.stream_executor.children:
        meta = child.data.meta_info["view"]
        prompt = child.data.text[:child.data.spans[-1]["start"]]
        spans = vlm_engine.image_processor.expand(prompt, [solid_image(BLUE)]).items[0].spans
        assert meta["num_images"] == 1 and meta["cached_tokens"] >= spans[-1][0] + spans[-1][1]


def test_a_video_feeds_its_sampled_frames_as_images(backend, vlm_engine, clip_path):
    @sgl.function
    def watch(s, path):
        s += sgl.user(sgl.video(path, 3) + "What happens?")
        s += sgl.assistant(sgl.gen("answer", max_tokens=2))

    state = watch.run(path=str(clip_path), backend=backend)
    assert state.error() is None
    assert state.get_meta_info("answer")["num_images"] == 3
    assert state.text().count(vlm_engine.image_token) == 3
    thumbnails = [im["thumbnail"] for im in state.snapshot()["images"]]
    brightness = [_decode(t).convert("L").getpixel((0, 0)) for t in thumbnails]
    assert brightness[0] < 30 < brightness[1] < 220 < brightness[2]  # first, middle, last frame of a fade


def test_a_video_that_cannot_be_read_fails_the_program_naming_the_file(backend, tmp_path):
    @sgl.function
    def watch(s, path):
        s += sgl.user(sgl.video(path, 2) + "What happens?")

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        watch.run(path=str(broken), backend=backend)


def test_chat_messages_carry_image_parts_without_the_placeholder_text(backend, vlm_engine):
    state = ask.run(image=solid_image(RED), question="What colour is it?", backend=backend)
    user = state.messages()[-2]
    assert user["role"] == "user"
    image_part, text_part = user["content"]
    assert image_part["type"] == "image_url" and image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert text_part == {"type": "text", "text": "What colour is it?"}
    assert _decode(image_part["image_url"]["url"]).getpixel((0, 0)) == RED


def test_snapshot_places_a_small_thumbnail_over_each_placeholder(backend, vlm_engine):
    state = ask.run(image=solid_image(RED, (400, 200)), question="Colour?", backend=backend)
    (image,) = state.snapshot()["images"]
    assert state.text()[image["start"]:image["end"]] == vlm_engine.image_token
    thumb = _decode(image["thumbnail"])
    assert max(thumb.size) == THUMBNAIL_SIZE and thumb.size == (64, 32) and thumb.getpixel((0, 0)) == RED


def test_a_corrupt_image_fails_the_program_and_the_engine_keeps_serving(backend, vlm_engine):
    with pytest.raises(ValueError, match="not a readable image"):
        ask.run(image=b"\x89PNG not really", question="Colour?", backend=backend)
    assert ask.run(image=solid_image(RED), question="Colour?", backend=backend).error() is None


def _decode(data_url: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
