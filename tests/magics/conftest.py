"""Magic tests run in a real IPython shell on the session's SmolLM2 engine (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shell():
    """One InteractiveShell with the extension loaded (no kernel: output is printed text)."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    result = ip.run_cell("%load_ext sgnb")
    assert result.success, result.error_in_exec
    return ip


@pytest.fixture
def ip(shell, engine):
    """The shell with `engine` as the %%sgl backend and greedy decoding; the engine must end idle and intact."""
    shell.user_ns["engine"] = engine
    for setting in ('SglMagics.backend = "engine"', "SglMagics.temperature = 0.0", "SglMagics.max_tokens = None",
                    "SglMagics.model = None", "SglMagics.enable_hierarchical_cache = False",
                    "SglMagics.hicache_storage_dir = None", "SglMagics.hicache_size = None",
                    "SglMagics.hicache_storage_size = None", "SglMagics.quantization = None",
                    "SglMagics.cpu_kernels = True"):
        assert shell.run_cell(f"%config {setting}").success
    yield shell
    snapshot = engine.snapshot()
    assert snapshot["running"] == [] and snapshot["waiting"] == []
    engine.check_integrity()



@pytest.fixture
def run(ip):
    """`run(cell_text)`: run a cell and re-raise what it raised, so a test sees the cell's real error."""

    def run_cell(cell: str):
        result = ip.run_cell(cell)
        if result.error_before_exec is not None:
            raise result.error_before_exec
        if result.error_in_exec is not None:
            raise result.error_in_exec
        return result.result

    return run_cell
