"""Images through `sgnb serve` (a real uvicorn server on 127.0.0.1 over a tiny random-weight Idefics3):
`image_data` on the native `/generate`, `image_url` content parts on the OpenAI chat route, bad images as 400s
naming the problem, and programs with `sgl.image` / `sgl.video` through `RuntimeEndpoint` and the `OpenAI`
backend, which must answer what the in-process engine backend answers."""

from __future__ import annotations

import base64
import io

import httpx
import pytest

import sgnb as sgl
from sgnb.lang.backends.openai import OpenAI
from sgnb.lang.backends.runtime_endpoint import RuntimeEndpoint
from tests.vlm_fixtures import solid_image

SERVED = "tiny-vlm"
RED, BLUE = (220, 20, 20), (20, 20, 220)


@pytest.fixture(scope="module")
def vlm_server(vlm_engine):
    from sgnb.serve import ServerThread, create_app

    with ServerThread(create_app(vlm_engine, served_model_name=SERVED)) as thread:
        yield thread
    vlm_engine.check_integrity()


@pytest.fixture
def http(vlm_server, vlm_engine):
    with httpx.Client(base_url=vlm_server.url, timeout=300) as client:
        yield client
    vlm_engine.check_integrity()


def data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def user_prompt(engine, content: str) -> str:
    return engine.apply_chat_template([{"role": "user", "content": content}])


# ------------------------------------------------------------------ native /generate
def test_model_info_names_the_image_placeholder(http, vlm_engine):
    assert http.get("/get_model_info").json()["image_token"] == vlm_engine.image_token == "<image>"


def test_generate_takes_image_data_like_the_engine(http, vlm_engine, tmp_path):
    prompt = user_prompt(vlm_engine, "<image>What colour?")
    params = {"max_new_tokens": 3, "temperature": 0}
    direct = vlm_engine.generate(prompt, params, image_data=solid_image(RED))
    path = tmp_path / "red.png"
    solid_image(RED).save(path)
    for image in (data_url(solid_image(RED)), str(path), data_url(solid_image(RED)).split(",", 1)[1]):
        r = http.post("/generate", json={"text": prompt, "image_data": image, "sampling_params": params})
        assert r.status_code == 200, r.text
        assert r.json()["text"] == direct["text"] and r.json()["meta_info"]["num_images"] == 1


def test_a_batch_takes_one_image_entry_per_prompt(http, vlm_engine):
    prompts = [user_prompt(vlm_engine, "<image><image>Same?"), user_prompt(vlm_engine, "No image here.")]
    r = http.post("/generate", json={
        "text": prompts, "image_data": [[data_url(solid_image(RED)), data_url(solid_image(BLUE))], None],
        "sampling_params": {"max_new_tokens": 0}, "return_logprob": True, "logprob_start_len": 0,
    })
    assert r.status_code == 200, r.text
    assert [x["meta_info"]["num_images"] for x in r.json()] == [2, 0]
    assert r.json()[0]["meta_info"]["prompt_tokens"] > r.json()[1]["meta_info"]["prompt_tokens"] + 80


@pytest.mark.parametrize(("image_data", "text", "fragment"), [
    ("data:image/png;base64,bm90IGEgcG5n", "<image>Hi", "not a readable image"),  # "not a png"
    ("http://example.com/cat.png", "<image>Hi", "cannot be fetched"),
    ("/no/such/picture.png", "<image>Hi", "does not exist"),
    (["data:,x"], "<image><image>Hi", "2"),  # two placeholders, one image: both counts named
    (123, "<image>Hi", "'image_data'"),
])
def test_bad_images_are_400_naming_the_problem_and_the_server_keeps_serving(http, vlm_engine, image_data, text,
                                                                          fragment):
    body = {"text": user_prompt(vlm_engine, text), "image_data": image_data, "sampling_params": {"max_new_tokens": 2}}
    r = http.post("/generate", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"], r.text
    ok = http.post("/generate", json={**body, "text": user_prompt(vlm_engine, "<image>Hi"),
                                      "image_data": data_url(solid_image(RED))})
    assert ok.status_code == 200, ok.text


# ------------------------------------------------------------------ OpenAI chat
def chat_body(*parts: dict) -> dict:
    return {"model": SERVED, "max_tokens": 3, "temperature": 0,
            "messages": [{"role": "user", "content": list(parts)}]}


def test_chat_image_url_parts_answer_like_the_engine(http, vlm_engine, tmp_path):
    direct = vlm_engine.generate(user_prompt(vlm_engine, "Look: <image> What colour?"),
                                 {"max_new_tokens": 3, "temperature": 0}, image_data=solid_image(BLUE))
    path = tmp_path / "blue.png"
    solid_image(BLUE).save(path)
    for url in (data_url(solid_image(BLUE)), str(path)):
        r = http.post("/v1/chat/completions", json=chat_body(
            {"type": "text", "text": "Look: "}, {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": " What colour?"}))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == direct["text"]
        assert r.json()["usage"]["prompt_tokens"] == direct["meta_info"]["prompt_tokens"]


@pytest.mark.parametrize(("image_url", "fragment"), [
    ({"url": "https://example.com/cat.png"}, "cannot be fetched"),
    ({"url": "data:image/png;base64,AAAA"}, "not a readable image"),
    ("not-an-object", "image_url"),
])
def test_bad_chat_images_are_400(http, image_url, fragment):
    r = http.post("/v1/chat/completions", json=chat_body(
        {"type": "image_url", "image_url": image_url}, {"type": "text", "text": "What is it?"}))
    assert r.status_code == 400 and fragment in r.json()["error"]["message"], r.text


# ------------------------------------------------------------------ programs over HTTP
@sgl.function
def look(s, image, clip):
    s += sgl.user(sgl.image(image) + "What colour is it?")
    s += sgl.assistant(sgl.gen("colour", max_tokens=3, temperature=0))
    s += sgl.user("And this clip?" + sgl.video(clip, 2))
    s += sgl.assistant(sgl.gen("clip", max_tokens=3, temperature=0))


@sgl.function
def look_and_pick(s, image):
    s += sgl.user(sgl.image(image) + "Red or blue?")
    s += sgl.assistant(sgl.select("pick", choices=["red", "blue"]))
    forks = s.fork(2)
    forks += sgl.user("Why?")
    forks += sgl.assistant(sgl.gen("why", max_tokens=3, temperature=0))
    forks.join()


def test_runtime_endpoint_programs_answer_like_the_engine_backend(vlm_server, vlm_backend, clip_path):
    endpoint = RuntimeEndpoint(vlm_server.url)
    try:
        assert endpoint.get_chat_template().image_token == "<image>"
        remote = look.run(image=solid_image(RED), clip=str(clip_path), backend=endpoint)
        local = look.run(image=solid_image(RED), clip=str(clip_path), backend=vlm_backend)
        assert remote.text() == local.text()
        assert remote.get_meta_info("clip")["num_images"] == 3  # the image and the clip's two frames
        remote = look_and_pick.run(image=solid_image(BLUE), backend=endpoint)
        local = look_and_pick.run(image=solid_image(BLUE), backend=vlm_backend)
        assert remote["pick"] == local["pick"] and remote["why"] == local["why"]
        assert remote.get_meta_info("pick")["normalized_prompt_logprobs"] == pytest.approx(
            local.get_meta_info("pick")["normalized_prompt_logprobs"], abs=1e-4)
    finally:
        endpoint.shutdown()


def test_openai_backend_sends_image_parts_and_answers_like_the_engine_backend(vlm_server, vlm_backend, clip_path):
    client = OpenAI(SERVED, base_url=vlm_server.url)
    try:
        remote = look.run(image=solid_image(RED), clip=str(clip_path), backend=client)
        local = look.run(image=solid_image(RED), clip=str(clip_path), backend=vlm_backend)
        assert remote["colour"] == local["colour"] and remote["clip"] == local["clip"]
        parts = remote.messages()[2]["content"]  # the second user turn: text, then the clip's two frames
        assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
        assert parts[0]["text"] == "And this clip?"
    finally:
        client.shutdown()
