"""Video frames: evenly spaced frames of a real clip, decoded with decord or with PyAV as the fallback."""

from __future__ import annotations

import sys

import av
import pytest
from PIL import Image

from sgnb.engine.multimodal.video import frame_indices, sample_frames

NUM_CLIP_FRAMES = 30


def frame_colour(i: int) -> tuple[int, int, int]:
    """Frame i of the test clip is one solid colour; neighbours differ by 8 in red and green."""
    return (i * 8, 255 - i * 8, 100)


def write_clip(path, num_frames: int = NUM_CLIP_FRAMES) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 1                # every frame a key frame: no colour bleeding
        for i in range(num_frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), frame_colour(i)))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def shown_frames(frames: list[Image.Image]) -> list[int]:
    """Which clip frame each decoded frame shows (its colour within the codec's error of one frame's)."""
    shown = []
    for frame in frames:
        colour = frame.getpixel((32, 24))
        matches = [i for i in range(NUM_CLIP_FRAMES)
                   if all(abs(a - b) <= 3 for a, b in zip(colour, frame_colour(i)))]
        assert len(matches) == 1, colour
        shown.append(matches[0])
    return shown


@pytest.fixture(params=["decord", "pyav"])
def decoder(request, monkeypatch):
    """Run with decord, or with PyAV by making `import decord` fail (the decoding stays real)."""
    if request.param == "pyav":
        monkeypatch.setitem(sys.modules, "decord", None)
    else:
        pytest.importorskip("decord")
    return request.param


def test_frame_indices_are_evenly_spaced_with_both_ends():
    assert frame_indices(30, 4) == [0, 10, 19, 29]
    assert frame_indices(30, 1) == [0]
    assert frame_indices(3, 5) == [0, 1, 2]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])   # an mkv does not state its frame count
def test_samples_evenly_spaced_frames(decoder, tmp_path, suffix):
    clip = write_clip(tmp_path / f"clip{suffix}")
    frames = sample_frames(clip, 4)
    assert [(f.mode, f.size) for f in frames] == [("RGB", (64, 48))] * 4
    assert shown_frames(frames) == [0, 10, 19, 29]


def test_a_short_clip_gives_all_its_frames(decoder, tmp_path):
    clip = write_clip(tmp_path / "short.mp4", num_frames=3)
    assert shown_frames(sample_frames(clip, 8)) == [0, 1, 2]


def test_unreadable_video_is_a_value_error(decoder, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(ValueError, match="cannot read video '.*bad.mp4'"):
        sample_frames(bad, 2)
    with pytest.raises(ValueError, match="video file '.*missing.mp4' does not exist"):
        sample_frames(tmp_path / "missing.mp4", 2)


@pytest.mark.parametrize("num_frames", [0, -1, 2.0, True])
def test_num_frames_must_be_a_positive_integer(tmp_path, num_frames):
    clip = write_clip(tmp_path / "clip.mp4", num_frames=2)
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        sample_frames(clip, num_frames)
