"""%%sgl in a real IPython shell on SmolLM2: definitions, interpolation, blocks, errors, batch, output, settings."""

from __future__ import annotations

import pytest

import sgnb as sgl
from sgnb.magics import CellFunction, SglEvalError, SglRuntimeError, SglSyntaxError, SglUsageError

pytestmark = pytest.mark.slow


def test_named_cell_defines_a_program_that_runs_like_a_function(ip, run, capsys, engine):
    run('%%sgl qa(question) --max-tokens 8\nQ: {question}\nA:{gen("answer", stop="\\n")}\n')
    assert capsys.readouterr().out == ""  # defining runs nothing
    qa = ip.user_ns["qa"]
    assert isinstance(qa, CellFunction) and isinstance(qa, sgl.SglFunction)
    assert qa.arg_names == ["question"]

    state = qa.run(question="What is the capital of France?")
    answer = state["answer"]
    assert "paris" in answer.lower()
    assert state.text() == "Q: What is the capital of France?\nA:" + answer

    @sgl.function
    def by_hand(s, question):
        s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=8)

    # the cell is the same program as the hand-written one
    assert by_hand.run(question="What is the capital of France?", temperature=0, backend=engine).text() == \
        state.text()

    states = qa.run_batch([{"question": "What is 2 + 2?"}, {"question": "Name a colour."}])
    assert [s.error() for s in states] == [None, None]
    assert states[1].text().startswith("Q: Name a colour.\nA:")


def test_expressions_see_parameters_then_notebook_then_primitives(ip, run):
    ip.user_ns.update(topic="notebook topic", style="terse", nums=[1, 2, 3])
    run("%%sgl show(topic, k=2)\n"
        'Topic: {topic}. Style: {style}. Upper: {topic.upper()}. Sum: {sum(x * k for x in nums)}.'
        '{None}{"" if callable(gen) else "no gen"}')
    show = ip.user_ns["show"]
    assert show.run(topic="param topic").text() == "Topic: param topic. Style: terse. Upper: PARAM TOPIC. Sum: 12."
    ip.user_ns["style"] = "verbose"  # the notebook namespace is read when the program runs
    assert show.run(topic="t", k=1).text() == "Topic: t. Style: verbose. Upper: T. Sum: 6."


def test_unnamed_cell_prints_its_text_with_comments_dropped_and_braces_literal(ip, run, capsys):
    ip.user_ns["n"] = 3
    run('%%sgl\n{# this line vanishes #}\nLiteral {{braces}} and {{"json": {n}}}\n@ is text here\n\n')
    expected = 'Literal {braces} and {"json": 3}\n@ is text here'
    assert capsys.readouterr().out == expected + "\n"
    assert ip.user_ns["_sgl"].text() == expected


def test_roles_render_with_the_chat_template_and_strip_edges(ip, run, engine):
    run("%%sgl --no-widget --out chat\n@system  Be brief.  \n@user\nHi\nthere\n\n@assistant Hello!\n")
    state = ip.user_ns["chat"]
    assert state.messages() == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi\nthere"},
                                {"role": "assistant", "content": "Hello!"}]
    assert state.text() == engine.apply_chat_template(state.messages(), add_generation_prompt=False)


def test_fork_children_see_the_loop_variable_and_their_gens_become_lists(ip, run):
    run("%%sgl --max-tokens 5 --no-widget\n"
        "@user Describe the weather in one word.\n"
        "@assistant\n"
        '{fork day in ["Monday", "Tuesday", "Friday"]}\n'
        'On {day}: {gen("weather", stop="\\n")}\n'
        "{join}\n")
    state = ip.user_ns["_sgl"]
    weather = state["weather"]
    assert isinstance(weather, list) and len(weather) == 3 and all(isinstance(w, str) for w in weather)
    snapshot = state.snapshot()
    children = snapshot["children"]
    assert len(children) == 3
    for child, day, value in zip(children, ["Monday", "Tuesday", "Friday"], weather):
        assert child["text"][child["fork_start"]:] == f"On {day}: {value}\n"
        gen_span = [sp for sp in child["spans"] if sp["name"] == "weather"][-1]
        assert gen_span["meta_info"]["cached_tokens"] > 0  # the shared prefix was committed before the fork
    assert "On Monday" not in state.text()  # gather mode leaves the parent's text alone


def test_join_concat_appends_the_childrens_text(ip, run):
    run("%%sgl --max-tokens 4 --no-widget --out listing\n"
        "Colors:\n"
        '{fork c in ["red", "blue"]}\n'
        '- {c}: {gen("note", stop="\\n")}\n'
        "{join concat}\n"
        "Done.")
    state = ip.user_ns["listing"]
    notes = [child["variables"]["note"] for child in state.snapshot()["children"]]
    assert state.text() == f"Colors:\n- red: {notes[0]}\n- blue: {notes[1]}\nDone."


def test_for_if_elif_else(ip, run, capsys):
    ip.user_ns["words"] = ["a", "b", "c"]
    run("%%sgl\n"
        "{for i, word in enumerate(words)}\n"
        "{if i == 0}first={word.upper()}{elif i == 1}second={word}{else}other={word}{end}\n"
        "{end}\n")
    assert capsys.readouterr().out == "first=A\nsecond=b\nother=c\n"


def test_generated_variables_are_names_in_later_expressions(ip, run):
    ip.user_ns["verdict"] = "stale notebook value"
    run("%%sgl --no-widget --out judged\n"
        'Question: Is the sky blue on a clear day? Answer: {select("verdict", ["yes", "no"])}\n'
        '{if verdict == "yes"}Correct.{else}Wrong.{end} ({s["verdict"]})')
    state = ip.user_ns["judged"]
    verdict = state["verdict"]
    assert verdict in ("yes", "no")
    assert state.text().endswith(("Correct." if verdict == "yes" else "Wrong.") + f" ({verdict})")


# ------------------------------------------------------------------ errors
def test_parse_error_shows_cell_line_and_caret_without_traceback(ip, capsys):
    result = ip.run_cell("%%sgl\nfirst line\nHello {name\nworld")
    err = result.error_in_exec
    assert isinstance(err, SglSyntaxError)
    assert (err.line, err.column) == (3, 7)
    out = capsys.readouterr().out
    assert "SglSyntaxError: unclosed '{'" in out
    assert "cell line 3, column 7:\n    Hello {name\n          ^\n" in out
    assert "Traceback" not in out and "File " not in out


def test_evaluation_error_points_at_the_failing_name(ip, capsys):
    ip.user_ns["price"] = 3
    ip.user_ns.pop("qty", None)
    result = ip.run_cell("%%sgl --no-widget\n@user Order\nTotal: {price * qty} euros")
    err = result.error_in_exec
    assert isinstance(err, SglEvalError) and isinstance(err.__cause__, NameError)
    assert (err.line, err.column) == (3, 17)
    out = capsys.readouterr().out
    assert "SglEvalError: NameError: name 'qty' is not defined" in out
    assert "    Total: {price * qty} euros\n                    ^^^\n" in out
    assert "Traceback" not in out


def test_runtime_failure_of_a_primitive_points_at_it(ip):
    result = ip.run_cell('%%sgl --no-widget --max-tokens 2\nFirst: {gen("a")}\nSecond: {gen("b", regex="((")}\n')
    err = result.error_in_exec
    assert isinstance(err, SglRuntimeError)
    assert (err.line, err.column) == (3, 9)
    assert err.source_line == 'Second: {gen("b", regex="((")}'
    assert isinstance(ip.user_ns["_sgl"]["a"], str)  # the first gen ran; the state keeps it


def test_header_error_points_into_the_magic_line(ip):
    result = ip.run_cell("%%sgl judge(article,, n) --temperature 0\nhi")
    err = result.error_in_exec
    assert isinstance(err, SglSyntaxError) and err.line == 1
    assert err.source_line == "%%sgl judge(article,, n) --temperature 0"
    assert "invalid parameter list" in err.message


@pytest.mark.parametrize("line, message", [
    ("--bogus", "unrecognized arguments: --bogus"),
    ("--out 1x", "--out needs a variable name"),
    ("named --out res", "--out applies to a cell that runs"),
    ("--temperature -1", "--temperature must be >= 0"),
    ("--max-tokens 0", "--max-tokens must be >= 1"),
    ("--batch undefined_rows", "--batch 'undefined_rows' failed: NameError"),
    ("--batch 5", "must give a list of argument dicts, got int"),
    ("--batch [1, 2]", "must give a list of argument dicts"),
    ("named(a) --batch [dict(b=1)]", "missing a required argument: 'a'"),
    ("--backend 42", "expected a backend"),
    ("--backend engine --model smollm2-135m", "pass --model or --backend, not both"),
    ("--backend no_such_engine", "--backend 'no_such_engine' failed: NameError"),
])
def test_usage_errors_name_the_problem(ip, line, message):
    result = ip.run_cell(f"%%sgl {line}\nhello")
    assert isinstance(result.error_in_exec, SglUsageError)
    assert message in str(result.error_in_exec)


# ------------------------------------------------------------------ batch, out, settings
def test_batch_runs_once_per_dict_and_prints_a_summary(ip, run, capsys):
    ip.user_ns["rows"] = [{"animal": "cat"}, {"animal": "dog"}]
    run('%%sgl --batch rows --max-tokens 3\nThe {animal} says {gen("sound", stop="\\n")}')
    states = ip.user_ns["_sgl"]
    assert [s.text().startswith(f"The {a} says ") for s, a in zip(states, ["cat", "dog"])] == [True, True]
    out = capsys.readouterr().out.splitlines()
    assert out == [f"[{i}] sound={s['sound']!r}" for i, s in enumerate(states)]


def test_named_cell_with_batch_defines_and_runs(ip, run):
    run('%%sgl greet(animal) --batch [dict(animal="cat"), dict(animal="owl")] --max-tokens 2 --out greetings\n'
        'Hello {animal}: {gen("g")}')
    assert ip.user_ns["greet"].arg_names == ["animal"]
    assert [s.text().split(":")[0] for s in ip.user_ns["greetings"]] == ["Hello cat", "Hello owl"]


def test_out_names_the_state_and_variables_read_by_key(ip, run):
    run('%%sgl --out res --no-widget --max-tokens 3\nSay hi: {gen("x")}')
    res = ip.user_ns["res"]
    assert isinstance(res, sgl.ProgramState)
    assert res.text() == "Say hi: " + res["x"]


def test_max_tokens_setting_and_option_override(ip, run):
    cell = '\nCount: {gen("x", ignore_eos=True)}'
    run("%config SglMagics.max_tokens = 2")
    run("%%sgl --no-widget --out a" + cell)
    run("%%sgl --no-widget --out b --max-tokens 3" + cell)
    assert ip.user_ns["a"].get_meta_info("x")["completion_tokens"] == 2
    assert ip.user_ns["b"].get_meta_info("x")["completion_tokens"] == 3


def test_backend_option_and_definition_defaults(ip, run):
    run("%config SglMagics.backend = None")
    result = ip.run_cell('%%sgl --no-widget --backend engine --out r --max-tokens 2\nHi {gen("x")}')
    assert result.success and isinstance(ip.user_ns["r"]["x"], str)
    run("%%sgl warm(x) --temperature 0.5 --max-tokens 7 --backend engine\n{x}")
    warm = ip.user_ns["warm"]
    assert warm.run_defaults == {"temperature": 0.5, "max_new_tokens": 7}
    assert warm.run(x="ok").text() == "ok"


def test_hicache_settings_become_engine_options_once_the_tiers_are_asked_for(ip, run):
    magics = ip.magics_manager.registry["SglMagics"]
    run("%config SglMagics.hicache_size = 0.5")
    assert magics.engine_options() == {}  # a size alone does not turn the tiers on
    run("%config SglMagics.hicache_storage_dir = '/tmp/sgnb-kv'")  # a storage folder does, as in Engine(...)
    assert magics.engine_options() == {"enable_hierarchical_cache": True, "hicache_size": 0.5,
                                       "hicache_storage_dir": "/tmp/sgnb-kv"}
    run("%config SglMagics.hicache_storage_dir = None")
    run("%config SglMagics.enable_hierarchical_cache = True")
    run("%config SglMagics.hicache_storage_size = 3.0")
    assert magics.engine_options() == {"enable_hierarchical_cache": True, "hicache_size": 0.5,
                                       "hicache_storage_size": 3.0}


def test_kernel_settings_become_engine_options_when_set_away_from_the_defaults(ip, run):
    magics = ip.magics_manager.registry["SglMagics"]
    assert magics.engine_options() == {}
    run("%config SglMagics.quantization = 'q8_0'")
    run("%config SglMagics.cpu_kernels = False")
    assert magics.engine_options() == {"quantization": "q8_0", "cpu_kernels": False}


def test_hicache_settings_give_cells_a_tiered_default_engine_whose_cache_outlives_it(ip, run, smollm2_path,
                                                                                   tmp_path, monkeypatch):
    from sgnb.engine import Engine
    from sgnb.lang.global_config import global_config
    from sgnb.magics.sgl_magic import shared_backend
    from tests.conftest import make_tiny_model

    model = str(make_tiny_model(tmp_path / "tiny", smollm2_path))
    monkeypatch.setattr(global_config, "default_model", model)  # the default engine, on a tiny model
    storage = str(tmp_path / "kv")
    for setting in ("backend = None", "enable_hierarchical_cache = True", f"hicache_storage_dir = {storage!r}"):
        run(f"%config SglMagics.{setting}")
    prompt = " ".join(["The tiered magic test keeps this long prefix on disk."] * 10)
    run(f'%%sgl --no-widget --out r --max-tokens 2\n{prompt}{{gen("x")}}')
    options = {"enable_hierarchical_cache": True, "hicache_storage_dir": storage}
    backend = shared_backend(model, options)  # the cell's engine: created with the settings, shared by cells
    assert backend.get_usage()["num_calls"] == 1 and ip.user_ns["r"].text().startswith(prompt)
    assert backend.engine.config.enable_hierarchical_cache and backend.engine.config.hicache_storage_dir == storage
    backend.engine.check_integrity()
    backend.shutdown()  # what a kernel restart does to it; the disk tier keeps the cell's prefix
    with Engine(model, **options) as fresh:
        again = fresh.generate(prompt, {"max_new_tokens": 1, "temperature": 0})["meta_info"]
        assert again["cached_tokens"] >= 0.9 * again["prompt_tokens"]
        assert fresh.stats()["hicache"]["hits_by_tier"]["disk"] == again["cached_tokens"]
        fresh.check_integrity()


# ------------------------------------------------------------------ %sgl_cache
def test_sgl_cache_shows_the_radix_cache_the_cells_use(ip, run, engine):
    from sgnb.widgets import CacheTree

    assert engine.flush_cache()
    tree = run("%sgl_cache")  # SglMagics.backend = "engine" (the ip fixture): the cells' engine
    try:
        assert isinstance(tree, CacheTree) and tree.cache_source.engine is engine and tree.is_live
        assert tree.cache["num_nodes"] == 1
        run('%%sgl --no-widget --max-tokens 2\nThe cache magic sees this cell: {gen("x")}')
        tree.refresh()
        assert tree.cache["num_nodes"] > 1 and "The cache magic" in tree.cache["nodes"][1]["text"]
    finally:
        tree.close()


def test_sgl_cache_with_a_url_follows_that_server(ip, run, engine):
    from sgnb.serve import ServerThread, create_app

    with ServerThread(create_app(engine)) as server:
        tree = run(f"%sgl_cache {server.url}")
        try:
            assert tree.source == server.url and tree.error == "" and tree.cache["num_nodes"] >= 1
        finally:
            tree.close()


@pytest.mark.parametrize("line", ["localhost:30000", "http://a http://b"])
def test_sgl_cache_refuses_anything_but_one_url(ip, line):
    result = ip.run_cell(f"%sgl_cache {line}")
    assert isinstance(result.error_in_exec, SglUsageError)
    assert "%sgl_cache takes nothing or one http(s):// server URL" in str(result.error_in_exec)


def test_grammar_gens_take_a_notebook_grammar_or_one_written_across_cell_lines(ip, run):
    import lark

    ip.user_ns["SQL"] = '''
root ::= "SELECT " col (", " col)* " FROM " table ";"
col ::= "name" | "age" | "city"
table ::= "users" | "orders"
'''
    run('%%sgl ask(question) --max-tokens 24 --no-widget\n'
        '@user {question} Answer with one SQL query.\n'
        '@assistant {gen("sql", ebnf=SQL)}\n'
        'As a list: {gen("items", lark=r"""\n'
        'start: "[" NUMBER ("," NUMBER)* "]"\n'
        'NUMBER: /[0-9]+/\n'
        '""")}\n')
    state = ip.user_ns["ask"].run(question="List the names and cities of all users.")
    assert state.error() is None
    lark.Lark('start: "SELECT " col (", " col)* " FROM " table ";"\n'
              'col: "name" | "age" | "city"\ntable: "users" | "orders"').parse(state["sql"])
    lark.Lark('start: "[" NUMBER ("," NUMBER)* "]"\nNUMBER: /[0-9]+/').parse(state["items"])
    assert state.get_meta_info("sql")["constraint"]["kind"] == "grammar"
