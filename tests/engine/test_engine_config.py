"""Engine options: the tiered-cache and kernel ones are validated once, with errors naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgnb.engine.engine_config import EngineConfig


def test_tiers_are_off_by_default() -> None:
    cfg = EngineConfig()
    assert cfg.enable_hierarchical_cache is False and cfg.hicache_storage_dir is None
    assert cfg.hicache_size == 2.0 and cfg.hicache_storage_size == 10.0


def test_a_storage_folder_turns_the_tiers_on(tmp_path: Path) -> None:
    cfg = EngineConfig(hicache_storage_dir=tmp_path)
    assert cfg.enable_hierarchical_cache is True and cfg.hicache_storage_dir == str(tmp_path)


@pytest.mark.parametrize(("option", "value"), [
    ("hicache_size", 0), ("hicache_size", -1.0), ("hicache_size", True), ("hicache_size", "2"),
    ("hicache_storage_size", 0), ("hicache_storage_size", None),
    ("hicache_storage_dir", ""), ("hicache_storage_dir", 3),
    ("enable_hierarchical_cache", 1),
])
def test_bad_tier_option_is_named_in_the_error(option: str, value) -> None:
    with pytest.raises(ValueError, match=option):
        EngineConfig(**{option: value})


def test_tiers_need_the_radix_cache() -> None:
    with pytest.raises(ValueError, match="enable_hierarchical_cache needs radix_cache=True"):
        EngineConfig(enable_hierarchical_cache=True, radix_cache=False)


def test_kernels_on_and_weights_dense_by_default() -> None:
    cfg = EngineConfig()
    assert cfg.cpu_kernels is True and cfg.quantization is None


@pytest.mark.parametrize(("option", "value"), [
    ("quantization", "q5_k"), ("quantization", "Q8_0"), ("quantization", ""), ("cpu_kernels", "yes"),
    ("cpu_kernels", 1),
])
def test_bad_kernel_option_is_named_in_the_error(option: str, value) -> None:
    with pytest.raises(ValueError, match=option):
        EngineConfig(**{option: value})
