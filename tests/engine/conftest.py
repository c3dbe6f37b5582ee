"""Fixtures of the engine tests: processor folders derived from the tiny vision-language models
(`tiny_vlm_folder`, in tests/vlm_fixtures.py), and SmolLM2 on the torch path (`torch_engine`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def processor_folder(tiny_vlm_folder, tmp_path) -> Callable[..., Path]:
    """(family, is_legacy_layout=False, **settings) -> a folder with the tiny model's config and tokenizer and
    its processor config changed by `settings` (image-processor keys, or the processor's own where it has
    them); the legacy layout keeps the image processor in `preprocessor_config.json`, as older folders do."""
    import json
    import shutil

    def folder(family: str, is_legacy_layout: bool = False, **settings) -> Path:
        source = tiny_vlm_folder(family)
        target = tmp_path / f"{family}-{len(list(tmp_path.iterdir()))}"
        target.mkdir()
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (source / name).exists():
                shutil.copy(source / name, target / name)
        processor = json.loads((source / "processor_config.json").read_text())
        image_processor = processor.pop("image_processor")
        for key, value in settings.items():
            (processor if key in processor else image_processor)[key] = value
        if is_legacy_layout:
            (target / "preprocessor_config.json").write_text(json.dumps(image_processor))
        else:
            processor["image_processor"] = image_processor
        (target / "processor_config.json").write_text(json.dumps(processor))
        return target

    return folder


@pytest.fixture(scope="session")
def torch_engine(smollm2_path):
    """The fp32 SmolLM2 engine on today's torch path (`cpu_kernels=False`), the C++ kernels' reference; tests
    must leave it idle and intact."""
    from sgnb.engine import Engine

    eng = Engine(str(smollm2_path), dtype="float32", cpu_kernels=False)
    yield eng
    eng.check_integrity()
    eng.shutdown()
