"""`{image(x)}` and `{video(path, n)}` in `%%sgl` cells, in a real IPython shell, on a tiny random-weight
Idefics3 engine: the cell is the same program as the hand-written one, and a bad video is a runtime error naming it."""

from __future__ import annotations

import pytest

import sgnb as sgl
from sgnb.magics import SglRuntimeError
from tests.vlm_fixtures import solid_image


@pytest.fixture
def vlm_ip(shell, vlm_engine, vlm_backend):
    """The shell with the tiny VLM's backend for %%sgl and greedy decoding; the engine must end intact."""
    shell.user_ns["vlm"] = vlm_backend
    for setting in ('SglMagics.backend = "vlm"', "SglMagics.temperature = 0.0", "SglMagics.max_tokens = 3",
                    "SglMagics.model = None"):
        assert shell.run_cell(f"%config {setting}").success
    yield shell
    assert shell.run_cell("%config SglMagics.max_tokens = None").success
    vlm_engine.check_integrity()


def run(shell, cell: str) -> None:
    result = shell.run_cell(cell)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    assert result.success, result.error_before_exec


def test_image_and_video_in_a_cell_run_like_the_hand_written_program(vlm_ip, vlm_backend, vlm_engine, clip_path):
    vlm_ip.user_ns.update(picture=solid_image((220, 20, 20)), clip=str(clip_path))
    run(vlm_ip, '%%sgl --no-widget --out seen\n@user {image(picture)} What colour?\n@assistant {gen("colour")}\n'
                '@user And here? {video(clip, 2)}\n@assistant {gen("clip")}\n')
    seen = vlm_ip.user_ns["seen"]

    @sgl.function
    def by_hand(s, picture, clip):
        s += sgl.user(sgl.image(picture) + " What colour?")
        s += sgl.assistant(sgl.gen("colour", max_tokens=3))
        s += sgl.user("And here? " + sgl.video(clip, 2))
        s += sgl.assistant(sgl.gen("clip", max_tokens=3))

    expected = by_hand.run(picture=solid_image((220, 20, 20)), clip=str(clip_path), temperature=0, backend=vlm_backend)
    assert seen.text() == expected.text()
    assert seen.text().count(vlm_engine.image_token) == 3
    assert seen.get_meta_info("clip")["num_images"] == 3 and len(seen.snapshot()["images"]) == 3


def test_a_video_that_cannot_be_read_is_a_runtime_error_naming_the_file(vlm_ip, tmp_path):
    missing = tmp_path / "missing.mp4"
    result = vlm_ip.run_cell(f'%%sgl --no-widget\n@user Look: {{video("{missing}", 2)}}\n@assistant {{gen("a")}}\n')
    err = result.error_in_exec
    assert isinstance(err, SglRuntimeError) and "missing.mp4" in str(err) and "does not exist" in str(err)
