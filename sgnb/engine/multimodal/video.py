"""Video as images: frames sampled evenly over a clip, decoded with decord, or with PyAV where decord is
missing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


def sample_frames(path: str | os.PathLike, num_frames: int) -> list[Image.Image]:
    """`num_frames` RGB frames evenly spaced over the clip at `path`, first and last frame included
    (all its frames when it has fewer). An unreadable file or `num_frames <= 0` is a `ValueError`."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames <= 0:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"video file {path!r} does not exist")
    try:
        import decord
    except ImportError:
        return _frames_pyav(path, num_frames)
    return _frames_decord(decord, path, num_frames)


def frame_indices(num_total: int, num_frames: int) -> list[int]:
    """`num_frames` indices spread evenly over [0, num_total - 1], ends included (all when fewer)."""
    if num_frames >= num_total:
        return list(range(num_total))
    if num_frames == 1:
        return [0]
    return [round(i * (num_total - 1) / (num_frames - 1)) for i in range(num_frames)]


def _frames_decord(decord, path: str, num_frames: int) -> list[Image.Image]:
    from PIL import Image

    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0))
        indices = frame_indices(len(reader), num_frames)
        batch = reader.get_batch(indices).asnumpy() if indices else []   # [n, height, width, 3] uint8
    except (RuntimeError, decord.DECORDError) as exc:
        raise ValueError(f"cannot read video {path!r}: {exc}") from None
    if not len(batch):
        raise ValueError(f"video {path!r} has no frames")
    return [Image.fromarray(frame) for frame in batch]


def _frames_pyav(path: str, num_frames: int) -> list[Image.Image]:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"video {path!r} has no video stream")
            num_total = container.streams.video[0].frames
        if num_total <= 0:                       # the container does not say: count by decoding
            num_total = sum(1 for _ in _decoded(av, path))
        wanted = set(frame_indices(num_total, num_frames))
        frames = [frame.to_image() for i, frame in enumerate(_decoded(av, path)) if i in wanted]
    except av.FFmpegError as exc:
        raise ValueError(f"cannot read video {path!r}: {exc}") from None
    if not frames:
        raise ValueError(f"video {path!r} has no frames")
    return frames


def _decoded(av, path: str):
    """The clip's video frames in order (PyAV `VideoFrame`s)."""
    with av.open(path) as container:
        yield from container.decode(video=0)


__all__ = ["frame_indices", "sample_frames"]
