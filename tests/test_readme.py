"""The README's set-up and every command it shows: run here for real, or listed with the reason and the check
that covers it instead.

Commands are read from the README's fenced code blocks: each line of a ```bash block is one command (its
trailing `# comment` dropped), each ```python block and the `%%sgl` block one program. The tests run the
README's own text (with a free port for 30000 and the `[optional]` flags expanded), so a README command that
stops working fails here, and one added without being classified fails `test_every_readme_command_is_checked`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve.server_process import free_port, server_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent  # where the `sgnb` console script is installed

# README command -> the test here that runs it.
RUN_HERE = {
    "sgnb pull smollm2-135m": "test_pull_and_generate_commands",
    'sgnb generate "Tell me a joke"': "test_pull_and_generate_commands",
    "sgnb bench --num-prompts 32 --shared-prefix-len 256": "test_bench_command",
    "sgnb serve --port 30000": "test_serve_curl_export_and_run_commands",
    "curl -s http://127.0.0.1:30000/generate -d '{\"text\": \"Once upon a time\", "
    "\"sampling_params\": {\"max_new_tokens\": 16}}'": "test_serve_curl_export_and_run_commands",
    "sgnb export notebooks/05_batch_pipelines.ipynb -o triage.py": "test_serve_curl_export_and_run_commands",
    "sgnb run triage.py:triage --input rows.jsonl --output out.jsonl [--backend http://127.0.0.1:30000] "
    "[--resume]": "test_serve_curl_export_and_run_commands",
}
# README command -> why this suite does not run it.
NOT_RUN = {
    "make demo": "builds the .venv this suite runs in; CI's `make test` makes it first "
                 "(test_ci_runs_make_demo_and_make_test)",
    "make test": "CI's entry point (.ci/run) and what runs this suite: it would recurse here "
                 "(test_ci_runs_make_demo_and_make_test)",
    **{command: "a benchmark: minutes of CPU on an idle machine, run by hand (see bench/)" for command in (
        ".venv/bin/python bench/fewshot.py",
        ".venv/bin/python bench/decode.py",
        ".venv/bin/python bench/caller_threads.py",
        ".venv/bin/python -m bench.programs",
        ".venv/bin/python bench/constrained_json.py",
        ".venv/bin/python bench/constrained_compile.py",
        ".venv/bin/python bench/multi_turn.py",
        ".venv/bin/python bench/multi_turn.py --restart",
        ".venv/bin/python bench/grammar.py",
    )},
}  # fmt: skip
# A program block (keyed by its first line) -> the test that runs it.
PROGRAMS = {
    "import sgnb as sgl": "test_prompt_program_block",
    "%load_ext sgnb": "test_sgl_magic_block",
    "from sgnb.engine import Engine": "test_engine_block",
}


def _blocks() -> list[tuple[str, str]]:
    """(language, body) of each fenced code block of the README."""
    pattern = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
    return [(m["lang"], m["body"]) for m in pattern.finditer(README.read_text())]


def _shell_commands() -> list[str]:
    return [
        re.sub(r"\s+#\s.*$", "", line).strip()
        for lang, body in _blocks() if lang == "bash"
        for line in body.splitlines() if line.strip()
    ]  # fmt: skip


def _command(prefix: str) -> str:
    """The one README command starting with `prefix`."""
    (command,) = [c for c in _shell_commands() if c.startswith(prefix)]
    return command


def _program(first_line: str) -> str:
    (body,) = [body for lang, body in _blocks() if lang != "bash" and body.startswith(first_line + "\n")]
    return body


def _run(command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a README shell command with .venv/bin first on PATH (as after `make venv`)."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def test_every_readme_command_is_checked() -> None:
    commands = _shell_commands()
    assert set(commands) == set(RUN_HERE) | set(NOT_RUN), "classify each README command in RUN_HERE or NOT_RUN"
    programs = [body.splitlines()[0] for lang, body in _blocks() if lang != "bash"]
    assert sorted(programs) == sorted(PROGRAMS), "give each README program block a test in PROGRAMS"
    for test_name in [*RUN_HERE.values(), *PROGRAMS.values()]:
        assert callable(globals().get(test_name)), f"{test_name} is not a test in {__name__}"


def test_ci_runs_make_demo_and_make_test() -> None:
    ci_commands = [line for line in (REPO / ".ci/run").read_text().splitlines() if line.startswith("make")]
    assert ci_commands == [_command("make test")]
    makefile = (REPO / "Makefile").read_text()
    (test_rule,) = re.findall(r"^test:(.*)$", makefile, re.MULTILINE)
    assert _command("make demo").split()[1] in test_rule.split()
    (demo_recipe,) = re.findall(r"^demo:.*\n\t(.*)$", makefile, re.MULTILINE)
    assert demo_recipe == "$(BIN)/python -m sgnb.demo"


def test_pull_and_generate_commands(tmp_path: Path) -> None:
    from sgnb.engine.model_store import resolve_model

    result = _run(_command("sgnb pull"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(resolve_model("smollm2-135m"))
    result = _run(_command("sgnb generate"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"\d+ prompt tokens \(\d+ cached\), [1-9]\d* generated, finish: ", result.stdout)


def test_bench_command(tmp_path: Path) -> None:
    # As written it takes minutes on a busy CPU: run it with tiny sizes appended (argparse's last value wins).
    result = _run(_command("sgnb bench") + " --num-prompts 2 --shared-prefix-len 16 --input-len 4 --output-len 2",
                  tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^requests\s+2$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^input_tokens\s+40$", result.stdout, re.MULTILINE), result.stdout  # 2 x (16 + 4)
    assert re.search(r"^output_tokens\s+4$", result.stdout, re.MULTILINE), result.stdout


def _records(path: Path) -> list[dict]:
    """`sgnb run`'s output records (appended as rows finish), in row order."""
    return sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["index"])


def test_serve_curl_export_and_run_commands(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "notebooks").symlink_to(REPO / "notebooks")
    reviews = ["Great food and friendly staff.", "The room was dirty.", "Nice view, terrible service."]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"review": r}) + "\n" for r in reviews[:2]))

    result = _run(_command("sgnb export"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "def triage(" in (tmp_path / "triage.py").read_text()

    run_command = _command("sgnb run")
    plain_run = re.sub(r"\s*\[.*?\]", "", run_command)  # without the optional flags: an in-process engine
    result = _run(plain_run, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [(r["index"], r["error"]) for r in _records(tmp_path / "out.jsonl")] == [(0, None), (1, None)]

    serve_command = shlex.split(_command("sgnb serve").replace("30000", str(port)))
    serve_command[0] = str(VENV_BIN / serve_command[0])
    with server_process([*serve_command, "--log-level", "warning"], port, cwd=tmp_path):
        result = _run(_command("curl").replace("30000", str(port)), tmp_path)
        assert result.returncode == 0, result.stderr
        reply = json.loads(result.stdout)
        assert reply["meta_info"]["completion_tokens"] == 16 and reply["text"]

        # Every optional flag: a new row, resumed over the server; the two rows already done are skipped.
        with (tmp_path / "rows.jsonl").open("a") as rows:
            rows.write(json.dumps({"review": reviews[2]}) + "\n")
        full_run = re.sub(r"\[(.*?)\]", r"\1", run_command).replace("30000", str(port))
        result = _run(full_run, tmp_path)
        assert result.returncode == 0, result.stderr
    records = _records(tmp_path / "out.jsonl")
    assert [(r["index"], r["error"]) for r in records] == [(0, None), (1, None), (2, None)]
    assert records[2]["input"] == {"review": reviews[2]}
    assert records[2]["output"]["label"] in ("positive", "negative", "mixed")


def test_prompt_program_block(tmp_path: Path) -> None:
    prelude = 'questions = ["How do I learn to cook?", "How do I learn to swim?"]\n'
    postlude = '\nassert state["best"] in ("1", "2", "3"), state.text()\nassert "Best idea: " in state.text()\n'
    _run_python(prelude + _program("import sgnb as sgl") + postlude, tmp_path)


def test_engine_block(tmp_path: Path) -> None:
    prelude = 'p1, p2, p3 = "One, two,", "The sky is", "Hello"\nn = 1\n'
    postlude = '\nassert "Paris" in out["text"], out["text"]\n'
    _run_python(prelude + _program("from sgnb.engine import Engine") + postlude, tmp_path)


def test_sgl_magic_block(tmp_path: Path) -> None:
    cells = _program("%load_ext sgnb").split("\n\n", 1)  # `%load_ext sgnb`, then the %%sgl cell
    code = f"""
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for cell in {cells!r}:
    shell.run_cell(cell).raise_error()
shell.run_cell('state = judge.run(article="Paris is the capital of France. It has the Eiffel Tower.")').raise_error()
state = shell.user_ns["state"]
assert len(state["judgement"]) == 3, state.text()
assert state["score"] in [str(i) for i in range(1, 11)], state.text()
"""
    _run_python(code, tmp_path)
