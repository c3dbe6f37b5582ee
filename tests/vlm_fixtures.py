"""Fixtures for programs with images (registered by the root conftest): one tiny random-weight vision-language
engine for the session, test images, a short clip written with PyAV, and chat templates in the layouts of
vision-language models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


# Vision-language templates read content-part lists. These two follow the layouts of SmolVLM's (an image part is
# "<image>" right after "User:") and LLaVA's (the turn's images first, each "<image>" and a newline).
PARTS_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] | capitalize }}:"
    "{% for p in m['content'] %}{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>Assistant:{% endif %}"
)
IMAGES_FIRST_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }}: "
    "{% for p in m['content'] if p['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for p in m['content'] if p['type'] == 'text' %}{{ p['text'] }} {% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_vlm_folder(tmp_path_factory) -> Callable[[str], Path]:
    """family ("idefics3" or "llava") -> a `build_tiny_vlm` folder of it, built once per session."""
    from sgnb.engine.multimodal.tiny_vlm import build_tiny_vlm

    built: dict[str, Path] = {}

    def folder(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_vlm(tmp_path_factory.mktemp(f"tiny-{family}"), family)
        return built[family]

    return folder


@pytest.fixture(scope="session")
def vlm_engine(tiny_vlm_folder):
    """An fp32 engine on a tiny random-weight Idefics3 (`build_tiny_vlm`); tests must leave it idle and intact."""
    from sgnb.engine import Engine

    eng = Engine(str(tiny_vlm_folder("idefics3")), dtype="float32")
    yield eng
    eng.check_integrity()
    eng.shutdown()


@pytest.fixture(scope="session")
def vlm_backend(vlm_engine):
    from sgnb.lang.backends.engine_backend import EngineBackend

    return EngineBackend(engine=vlm_engine)


@pytest.fixture
def fresh_vlm_backend(vlm_backend, vlm_engine):
    """`vlm_backend` with an empty cache; the engine must be intact after the test."""
    assert vlm_backend.flush_cache()
    yield vlm_backend
    vlm_engine.check_integrity()


def ask_program():
    """A program asking one question about one image (greedy, 3 answer tokens)."""
    import sgnb as sgl

    @sgl.function
    def ask(s, image, question):
        s += sgl.user(sgl.image(image) + question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=3, temperature=0))

    return ask


def solid_image(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)):
    """A one-colour RGB PIL image."""
    from PIL import Image

    return Image.new("RGB", size, color)


def write_clip(path: Path, num_frames: int = 12, size: int = 32) -> Path:
    """An mp4 clip whose frames fade from black to white (PyAV), at `path`."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            value = round(255 * i / max(num_frames - 1, 1))
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), value, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def clip_path(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "fade.mp4")
