"""`%%sgl` cells written as plain Python: the generated program does exactly what the cell does.

Each cell runs twice on SmolLM2 at temperature 0: as the magic runs it (`compile_cell`) and as the exported
`@sgnb.function`; the texts and variables must be identical. Cells whose whitespace or names depend on run
time are refused (`NotReadable`, see test_codegen_checks.py and test_whitespace_flow.py), and the exporter
embeds them instead.
"""

from __future__ import annotations

import pytest

import sgnb
from tests.pipeline.codegen_cells import CELLS, EXAMPLES, generate


@pytest.fixture(scope="module")
def backend(engine):
    return sgnb.EngineBackend(engine=engine)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CELLS))
def test_generated_program_does_what_the_cell_does(case, backend, engine):
    header, body, args = CELLS[case]
    cell, generated, code = generate(header, body, {"EXAMPLES": EXAMPLES})
    assert "compile_cell" not in code and code.startswith("@sgnb.function\ndef ")
    a = cell.run(backend=backend, temperature=0, max_new_tokens=4, **args)
    b = generated.run(backend=backend, temperature=0, max_new_tokens=4, **args)
    assert b.text() == a.text()
    assert b.messages() == a.messages()
    assert b.stream_executor.data.variables == a.stream_executor.data.variables
    engine.check_integrity()


def test_generated_code_reads_like_a_hand_written_program():
    _, _, code = generate(*CELLS["judge"][:2], {})
    assert code.splitlines()[:4] == [
        "@sgnb.function",
        "def judge(s, article):",
        '    s += sgnb.system("You are a strict reviewer.")',
        '    s += sgnb.user(f"Judge this article:\\n{article}")',
    ]
    assert "    with s.assistant():" in code
    assert '            branch += f"Judgement on {d}: " + sgnb.gen("judgement", max_tokens=3, stop="\\n") + "\\n"' \
        in code
    _, _, fewshot = generate(*CELLS["fewshot"][:2], {"EXAMPLES": EXAMPLES})
    assert "        if len(s['answer']) > 3:" in fewshot  # a generated variable reads the state
