"""`sgnb export`: notebooks become plain Python modules holding their programs and the code those need."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sgnb.pipeline.errors import NotebookError
from sgnb.pipeline.export import export_notebook
from tests.notebooks.execution import DEMO_NOTEBOOKS, NOTEBOOKS
from tests.pipeline.notebook_files import REPO, sgnb, write_notebook

HELPERS = '''\
import json
import sgnb as sgl
from sgnb.engine import Engine
from sgnb.widgets import CacheTree

engine = Engine("smollm2-135m")
sgl.set_default_backend(engine)
tree = CacheTree(engine)
tree'''
DATA = '''\
%config SglMagics.model = "smollm2-135m"
!ls
TONES = ["calm"]
TONES.append("bright")
def shout(text):
    return text.upper() + "!"
unused = json.dumps(TONES)
display(unused)'''
PROGRAM = '''\
%%sgl greet(name, tone=TONES[0]) --temperature 0 --max-tokens 8
@user Greet {shout(name)} in a {tone} way.
@assistant {gen("greeting", stop="\\n")}'''


def _import_in_subprocess(path, code):
    """Import the exported module in a fresh interpreter and run `code` there; returns its stdout."""
    script = f"import importlib.util, sys\nspec = importlib.util.spec_from_file_location('p', {str(path)!r})\n" \
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n" + code
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=path.parent,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_program_comes_with_the_notebook_code_it_reads_and_nothing_else(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", "# md A title", HELPERS, DATA, PROGRAM, "greet.run(name='x')")
    source = export_notebook(nb).source
    assert "TONES = [\"calm\"]\nTONES.append(\"bright\")\n\ndef shout(text):" in source
    assert "@sgnb.function\ndef greet(s, name, tone=TONES[0]):" in source
    assert '    s += sgnb.user(f"Greet {shout(name)} in a {tone} way.")' not in source  # a call: its own append
    assert "    with s.user():" in source and "        s += shout(name)" in source
    for left_out in ("Engine(", "CacheTree", "set_default_backend", "%config", "!ls", "unused", "display(",
                     "greet.run", "import json"):
        assert left_out not in source, left_out
    assert "RUN_DEFAULTS = {\n    \"greet\": {\"temperature\": 0.0, \"max_new_tokens\": 8},\n}" in source
    path = tmp_path / "pipeline.py"
    path.write_text(source)
    # importing the pipeline defines the program and loads no model, torch or widgets
    out = _import_in_subprocess(path, "print(type(m.greet).__name__, m.greet.arg_names, m.TONES, "
                                      "sorted({'torch', 'ipywidgets', 'IPython'} & set(sys.modules)))")
    assert out.strip() == "SglFunction ['name', 'tone'] ['calm', 'bright'] []"


def test_unnamed_and_run_time_dependent_cells_are_embedded_and_compiled_at_import(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", "CTX = 'x'",
                        "%%sgl --temperature 0\n@user {CTX}\n\nGo.\n@assistant {gen('a')}",
                        "%%sgl f(ctx, q)\n@user\n{ctx}\n\nQuestion: {q}\n@assistant {gen('a', regex=r'\\d+')}")
    result = export_notebook(nb)
    assert [(p.name, p.cell) for p in result.programs] == [("cell_2", 2), ("f", 3)]
    assert "arguments each row holds" in result.programs[0].embedded_reason
    assert "may or may not start a role" in result.programs[1].embedded_reason
    assert "from sgnb.magics import compile_cell" in result.source
    assert "f = compile_cell(\n    r\"\"\"@user\n{ctx}\n\nQuestion: {q}\n@assistant {gen('a', regex=r'\\d+')}\"\"\",\n" \
           "    \"f(ctx, q)\"," in result.source
    path = tmp_path / "pipeline.py"
    path.write_text(result.source)
    out = _import_in_subprocess(path, "print(m.cell_2.__name__, type(m.f).__name__, m.f.arg_names, m.CTX)")
    assert out.strip() == "cell_2 CellFunction ['ctx', 'q'] x"


@pytest.mark.parametrize("name", DEMO_NOTEBOOKS)
def test_every_demo_notebook_exports_to_a_module_that_imports_without_a_model(name, tmp_path):
    result = export_notebook(NOTEBOOKS / f"{name}.ipynb")
    path = tmp_path / "pipeline.py"
    path.write_text(result.source)
    out = _import_in_subprocess(path, "from sgnb.pipeline.runner import pipeline_programs\n"
                                      "print(sorted(pipeline_programs(m)), 'torch' in sys.modules)")
    assert out.strip() == f"{sorted(p.name for p in result.programs)} False"
    # only the error examples (tagged raises-exception: notebook 01 has one) are left out
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    error_examples = [f"cell {i}" for i, cell in enumerate(cells, 1)
                      if "raises-exception" in cell.get("metadata", {}).get("tags", [])]
    assert len(error_examples) == (1 if name == "01_quickstart" else 0)
    assert [n.split(":")[0] for n in result.skipped_cells] == error_examples
    assert "Engine(" not in result.source.split('"""', 2)[2]  # the notebook's engine stays behind


def test_notebook_05_exports_triage_as_readable_code():
    result = export_notebook(NOTEBOOKS / "05_batch_pipelines.ipynb")
    [program] = result.programs
    assert program.name == "triage" and program.embedded_reason is None
    body = result.source.split("def triage(s, review):\n", 1)[1].split("\n\n", 1)[0]
    assert body.splitlines() == [
        '    s += sgnb.system("You label customer reviews.")',
        "    s += sgnb.user(",
        '        f"Review: {review}\\n"',
        '        "Is the review positive, negative or mixed? Then summarize it in a few words."',
        "    )",
        "    with s.assistant():",
        '        s += "Label: " + sgnb.select("label", choices=LABELS)',
        '        s += "\\nSummary:" + sgnb.gen("summary", stop="\\n")',
    ]
    assert 'LABELS = ["positive", "negative", "mixed"]' in result.source and "REVIEWS" not in result.source


# ------------------------------------------------------------------ bad input
def test_a_notebook_without_sgl_cells_is_refused_by_name(tmp_path):
    nb = write_notebook(tmp_path / "plain.ipynb", "x = 1", "# md no programs here")
    with pytest.raises(NotebookError, match=r"plain\.ipynb: no %%sgl cells to export"):
        export_notebook(nb)
    done = sgnb("export", nb, "-o", tmp_path / "p.py")
    assert done.returncode == 1 and "sgnb export: error:" in done.stderr and "no %%sgl cells" in done.stderr
    assert not (tmp_path / "p.py").exists()


def test_a_cell_that_does_not_parse_is_reported_with_its_cell_line_and_caret(tmp_path):
    nb = write_notebook(tmp_path / "bad.ipynb", "x = 1", "%%sgl f(a)\n@user {a}\n{fork i in range(2)}\nhi")
    with pytest.raises(NotebookError) as info:
        export_notebook(nb)
    message = str(info.value)
    assert message.startswith(f"{nb} cell 2: SglSyntaxError: unclosed {{fork}} block")
    assert "cell line 3, column 1:\n    {fork i in range(2)}\n    ^^^^" in message


def test_a_bad_magic_line_and_a_file_that_is_not_a_notebook_are_named(tmp_path):
    nb = write_notebook(tmp_path / "opts.ipynb", "%%sgl f(a) --temprature 0\n@user {a}")
    with pytest.raises(NotebookError, match=r"opts\.ipynb cell 1: bad %%sgl line .*--temprature"):
        export_notebook(nb)
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    with pytest.raises(NotebookError, match=r"broken\.ipynb: not a Jupyter notebook \(invalid JSON at line 1"):
        export_notebook(broken)
    with pytest.raises(NotebookError, match=r"absent\.ipynb: no such notebook"):
        export_notebook(tmp_path / "absent.ipynb")


def test_an_output_file_that_cannot_be_written_is_named(tmp_path):
    done = sgnb("export", NOTEBOOKS / "05_batch_pipelines.ipynb", "-o", tmp_path / "no" / "such" / "p.py")
    assert done.returncode == 1
    assert f"sgnb export: error: cannot write {tmp_path / 'no' / 'such' / 'p.py'}: No such file" in done.stderr


def test_export_writes_the_module_and_says_what_it_holds(tmp_path):
    done = sgnb("export", NOTEBOOKS / "05_batch_pipelines.ipynb", "-o", tmp_path / "triage.py")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and "1 program(s): triage" in done.stderr
    source = (tmp_path / "triage.py").read_text()
    assert source == export_notebook(NOTEBOOKS / "05_batch_pipelines.ipynb", "triage.py").source
    assert "    sgnb run triage.py:triage --input rows.jsonl --output out.jsonl" in source


def test_code_reading_a_cells_run_time_result_is_left_out_with_a_note(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", "%%sgl --out first\n@user hi {gen('x')}",
                        "HINT = first['x'] + '!'", "%%sgl f(a)\n@user {a} {HINT}")
    result = export_notebook(nb)
    assert "HINT = " not in result.source
    assert result.skipped_cells == ["cell 2: reads first, the result of a %%sgl cell run in the notebook, which does "
                                    "not exist when the pipeline is imported"]
