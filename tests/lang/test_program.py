"""`@function` programs: run, run_batch (errors isolated, prefix precached), bind, trace, compile,
completion-model API speculative execution, and the lazily created default backend."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import sgnb as sgl
from sgnb.lang.program import SglFunction

pytestmark = pytest.mark.slow

FEW_SHOT = (
    "Answer each question with one word.\n"
    "Q: What colour is grass?\nA: green\n"
    "Q: What colour is the sky on a clear day?\nA: blue\n"
    "Q: What colour is snow?\nA: white\n"
)


@sgl.function
def colour_qa(s, question):
    s += FEW_SHOT
    s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=4)


def test_run_batch_isolates_a_failing_program(backend, engine):
    @sgl.function
    def maybe_fail(s, question, fail):
        s += FEW_SHOT + "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=4)
        if fail:
            s["answer"]
            raise ValueError(f"program failed on purpose for {question!r}")
        s += "\nQ: And its opposite?\nA:" + sgl.gen("second", stop="\n", max_tokens=4)

    batch = [
        {"question": "What colour is coal?", "fail": False},
        {"question": "What colour is blood?", "fail": True},
        {"question": "What colour is milk?", "fail": False},
    ]
    states = maybe_fail.run_batch(batch, temperature=0)
    assert len(states) == 3
    assert isinstance(states[1].error(), ValueError) and "blood" in str(states[1].error())
    assert states[1]["answer"]  # produced before the failure
    with pytest.raises(sgl.ProgramError, match="failed on purpose"):
        states[1]["second"]
    for i in (0, 2):
        assert states[i].error() is None
        assert states[i]["answer"] and "second" in states[i]
    engine.check_integrity()


def test_run_batch_precaches_the_constant_prefix(backend, engine):
    assert backend.flush_cache()
    prefix = colour_qa.prefix_hint(backend)
    assert prefix == FEW_SHOT + "Q: "
    questions = ["What colour is coal?", "What colour is a banana?", "What colour is an orange?",
                 "What colour is a lemon?"]
    states = colour_qa.run_batch([{"question": q} for q in questions], temperature=0)
    num_prefix_tokens = len(engine.tokenizer.encode(FEW_SHOT))
    for state in states:
        # every program, including the first wave that runs concurrently, finds the prefix cached
        assert state.get_meta_info("answer")["cached_tokens"] >= num_prefix_tokens - 1


def test_run_batch_orders_results_and_accepts_threads_and_generators(backend):
    questions = ["What colour is coal?", "What colour is milk?"]
    states = colour_qa.run_batch([{"question": q} for q in questions], num_threads=1, temperature=0,
                                 progress_bar=True)
    for q, state in zip(questions, states):
        assert q in state.text()
    streamed = list(colour_qa.run_batch([{"question": q} for q in questions], generator_style=True, temperature=0))
    assert [s["answer"] for s in streamed] == [s["answer"] for s in states]


def test_run_batch_rejects_bad_items(backend):
    with pytest.raises(ValueError, match="list of keyword-argument dicts"):
        colour_qa.run_batch({"question": "x"})
    with pytest.raises(ValueError, match="item 1 must be a dict"):
        colour_qa.run_batch([{"question": "x"}, "y"])
    with pytest.raises(TypeError, match=r"colour_qa.*batch item 0"):
        colour_qa.run_batch([{"querstion": "x"}])
    with pytest.raises(ValueError, match="num_threads"):
        colour_qa.run_batch([{"question": "x"}], num_threads=0)
    assert colour_qa.run_batch([]) == []


def test_run_raises_the_program_error_and_checks_arguments(backend):
    @sgl.function
    def broken(s, x):
        s += "Hello " + x
        raise KeyError("deliberate")

    with pytest.raises(KeyError, match="deliberate"):
        broken.run(x="world")
    with pytest.raises(TypeError, match="broken"):
        broken.run(y=1)
    with pytest.raises(ValueError, match="first parameter"):
        sgl.function(lambda: None)


def test_bind_and_calling_a_program(backend):
    bound = colour_qa.bind(question="What colour is coal?")
    assert isinstance(bound, SglFunction)
    state = bound.run(temperature=0)
    assert "coal" in state.text() and state["answer"]
    state2 = colour_qa(question="What colour is coal?", temperature=0)  # calling is run()
    assert state2["answer"] == state["answer"]
    with pytest.raises(ValueError, match="no parameter"):
        colour_qa.bind(colour="red")

    @sgl.function
    def two_questions(s):
        colour_qa(s, "What colour is coal?")  # a program called on a state appends to it
        s += "\n"
        colour_qa(s, "What colour is milk?")

    state3 = two_questions.run(temperature=0)
    assert state3.text().count(FEW_SHOT) == 2 and "milk" in state3.text()


def test_trace_and_compile(backend, engine):
    @sgl.function
    def chat(s, question):
        s += sgl.system("You answer in one word.")
        s += sgl.user("Question: " + question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=4))

    traced = chat.trace()
    kinds = [type(n).__name__ for n in traced.nodes]
    assert kinds[:4] == ["RoleBegin", "Constant", "RoleEnd", "RoleBegin"]
    assert "Gen" in kinds
    template = backend.get_chat_template()
    prefix = traced.prefix(template)
    rendered = engine.apply_chat_template(
        [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Question: X"}]
    )
    assert rendered.startswith(prefix) and prefix.endswith("Question: ")

    compiled = chat.compile()
    assert compiled.prefix(backend) == prefix
    backend.flush_cache()
    state = compiled.run(question="What colour is snow?", temperature=0)
    assert state.get_meta_info("answer")["cached_tokens"] >= len(engine.tokenizer.encode(prefix)) - 1
    states = compiled.run_batch([{"question": "Is water wet?"}, {"question": "Is fire hot?"}], temperature=0)
    assert all(s["answer"] is not None for s in states)


def test_completion_speculative_execution_makes_fewer_calls(backend):
    def character(s):
        s += "Construct a character within the following format:\n"
        s += "Name: Steve Jobs.\nBirthday: February 24, 1955.\nJob: Apple CEO.\n"
        s += "\nPlease generate new Name, Birthday and Job.\n"
        s += "Name:" + sgl.gen("name", stop="\n") + "\nBirthday:" + sgl.gen("birthday", stop="\n")
        s += "\nJob:" + sgl.gen("job", stop="\n") + "\n"

    plain = sgl.function(character)
    spec = sgl.function(num_api_spec_tokens=32)(character)
    before = backend.get_usage()
    plain_state = plain.run(temperature=0, max_new_tokens=12)
    middle = backend.get_usage()
    spec_state = spec.run(temperature=0, max_new_tokens=12)
    after = backend.get_usage()
    assert middle["num_calls"] - before["num_calls"] == 3
    assert after["num_calls"] - middle["num_calls"] < 3
    assert after["prompt_tokens"] - middle["prompt_tokens"] < middle["prompt_tokens"] - before["prompt_tokens"]
    for name in ("name", "birthday", "job"):
        assert "\n" not in spec_state[name]
    assert spec_state["name"] == plain_state["name"]  # greedy: the lookahead starts with the same text


def test_default_backend_is_created_lazily():
    code = textwrap.dedent(
        """
        import sys
        import sgnb as sgl
        assert sgl.global_config.default_backend is None
        assert "torch" not in sys.modules

        @sgl.function
        def hello(s):
            s += "Hello, my name is" + sgl.gen("name", max_tokens=3, temperature=0)

        state = hello.run()
        backend = sgl.global_config.default_backend
        print(type(backend).__name__, backend.get_model_name(), repr(state["name"]))
        backend.engine.check_integrity()
        backend.shutdown()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("EngineBackend smollm2-135m")


def test_run_batch_progress_bar_is_a_widget_in_a_notebook(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    cell = textwrap.dedent(
        """
        import sgnb as sgl
        sgl.set_default_backend(sgl.Engine("smollm2-135m"))

        @sgl.function
        def qa(s, q):
            s += "Q: " + q + "\\nA:" + sgl.gen("a", max_tokens=2)

        states = qa.run_batch([{"q": "one"}, {"q": "two"}, {"q": "three"}], progress_bar=True, temperature=0)
        print(sum(st.error() is None for st in states))
        """
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(nb, timeout=120, store_widget_state=True, resources={"metadata": {"path": os.getcwd()}}).execute()
    outputs = nb.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert any(o.get("text", "").strip() == "3" for o in outputs if o.output_type == "stream")
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    bars = [m["state"] for m in states if m["model_name"] == "IntProgressModel"]
    assert len(bars) == 1 and bars[0]["value"] == bars[0]["max"] == 3
    assert bars[0]["bar_style"] == "success"


def test_repetition_penalty_from_gen_or_from_run_changes_the_generation(backend):
    prompt = "Say it again: blue blue blue blue blue blue blue blue"

    @sgl.function
    def plain(s):
        s += prompt + sgl.gen("x", max_tokens=8, temperature=0)

    @sgl.function
    def penalized(s):
        s += prompt + sgl.gen("x", max_tokens=8, temperature=0, repetition_penalty=2.0)

    base = plain.run()["x"]
    from_gen = penalized.run()["x"]
    assert from_gen != base
    assert plain.run(repetition_penalty=2.0)["x"] == from_gen
    assert [s["x"] for s in plain.run_batch([{}], repetition_penalty=2.0)] == [from_gen]
