"""Every demo notebook runs top to bottom headless (nbclient, a real kernel, SmolLM2 on the CPU), and the saved
widget state holds the fork trees, cache trees and constraint paths the notebook shows."""

from __future__ import annotations

import json
import re

import pytest

from tests.notebooks.execution import DEMO_NOTEBOOKS, NOTEBOOKS, executed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _programs(run, text):
    """The ProgramView states the cell containing `text` displayed."""
    return [w["program"] for w in run.widgets(run.cell_with(text)) if "program" in w]


def _has_plot(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


def _finished(program) -> bool:
    return program["is_finished"] and program["error"] is None


@pytest.mark.parametrize("name", DEMO_NOTEBOOKS)
def test_notebooks_are_stored_without_outputs(name):
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "widgets" not in nb["metadata"]
    assert nb["cells"][0]["cell_type"] == "markdown"  # each notebook opens with its story


def test_01_quickstart_tours_the_language():
    run = executed("01_quickstart")
    # the one failing cell is the tagged example of an error message: line, column, caret
    [(index, error)] = run.errors()
    assert "raises-exception" in run.nb.cells[index].metadata["tags"]
    assert error.startswith("SglSyntaxError: unclosed {fork} block") and "cell line 4, column 1" in error
    hello = _programs(run, "What is the capital of France?")
    assert len(hello) == 1 and _finished(hello[0]) and "Paris" in hello[0]["states"][0]["variables"]["answer"]
    cities = run.stream_text(run.cell_with('print(capital.run(country="Japan")["city"])')).splitlines()
    assert [any(c in line for c in ("Tokyo", "Rome", "Ottawa", "Cairo")) for line in cities] == [True] * 4
    # fork/join: the root and its two branches; the branches' lines came back as a list
    [fork] = _programs(run, "{fork who in")
    assert _finished(fork) and len(fork["states"]) == 3
    root = fork["states"][0]
    assert len(root["children"]) == 2 and len(root["variables"]["line"]) == 2
    assert [s["own_variables"]["line"] for s in fork["states"][1:]] == root["variables"]["line"]
    # the regex gen: a year, every generated character allowed by the pattern
    [year] = _programs(run, "Apollo 11")
    assert re.fullmatch(r"(19|20)[0-9]{2}", year["states"][0]["variables"]["year"])
    quiz = run.stream_text(run.cell_with("quiz.run(topic="))
    assert "Question 1:" in quiz and "Question 2:" in quiz and "The harder one is question" in quiz
    same = run.stream_text(run.cell_with("def capital_py")).strip().split(" | ")
    assert len(same) == 2 and same[0] == same[1]


def test_02_fork_join_shows_skeleton_and_tree():
    run = executed("02_fork_join")
    assert run.errors() == []
    [sot] = _programs(run, "--out sot")
    assert _finished(sot) and len(sot["states"]) == 4  # root + one branch per tip
    root = sot["states"][0]
    assert len(root["variables"]["detail"]) == 3 and all(s["depth"] == 1 for s in sot["states"][1:])
    [tot] = _programs(run, "--out tot")
    assert _finished(tot) and len(tot["states"]) == 1 + 2 + 4
    depths = [s["depth"] for s in tot["states"]]
    assert depths.count(1) == 2 and depths.count(2) == 4
    leaves = [s for s in tot["states"] if s["depth"] == 2]
    assert all(s["own_variables"]["verdict"] in ("yes", "no") for s in leaves)
    tot_root = tot["states"][0]
    assert [len(v) for v in tot_root["variables"]["verdict"]] == [2, 2]  # theme, then style
    timing = run.cell_with("timings = {}")
    assert _has_plot(timing)
    timings = eval(run.stream_text(timing).strip().splitlines()[-1])  # noqa: S307 - the dict it printed
    assert set(timings) == {"one after another", "fork / join"}
    cached = run.stream_text(run.cell_with("stats = engine.stats()"))
    assert int(re.search(r"served from the cache: (\d+)", cached).group(1)) > 0


def test_03_constrained_decoding_makes_forced_tokens_visible():
    run = executed("03_constrained_decoding")
    assert run.errors() == []
    assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", run.stream_text(run.cell_with('print(phone["number"])')).strip())
    assert run.stream_text(run.cell_with("model_validate_json")).startswith("Character(name=")
    [on] = run.widgets(run.cell_with('ConstraintPath(hero, "character"'))
    [off] = run.widgets(run.cell_with("ConstraintPath(runs[False]"))
    on, off = on["trace"], off["trace"]
    for trace in (on, off):  # each is a JSON object (then the end-of-sequence token)
        value, end = json.JSONDecoder().raw_decode(trace["text"])
        assert set(value) == {"name", "age", "role"} and trace["text"][end:] in ("", "<|im_end|>")
    assert on["num_forced"] >= 3 and any(seg["forced"] for seg in on["segments"])
    assert on["text"].startswith('{"name":') and on["segments"][0]["forced"]
    assert off["num_forced"] == 0 and off["num_steps"] > on["num_steps"] - on["num_forced"]
    report = run.stream_text(run.cell_with("runs = {}"))
    steps = [int(x) for x in re.findall(r"(\d+) forward passes", report)]
    assert len(steps) == 2 and steps[0] < steps[1]  # jump-forward on needs fewer model passes
    assert _has_plot(run.cell_with("jump-forward on\", \"jump-forward off\"]"))
    assert re.match(r"\d{1,2} \| an? ", run.stream_text(run.cell_with('print(_sgl["legs"]')))
    # grammars: the lark package parses the Lark-constrained expression; the EBNF-constrained SQL query's path
    # shows grammar positions and forced keywords; a recursive JSON menu validates, nested
    expression, tree = run.stream_text(run.cell_with("lark.Lark(ARITHMETIC).parse")).split("\n", 1)
    assert re.fullmatch(r"[0-9()+\-*/]+", expression) and tree.startswith("start\n")
    [sql] = run.widgets(run.cell_with('ConstraintPath(query, "sql"'))
    sql = sql["trace"]
    assert sql["kind"] == "grammar" and sql["summary"].startswith("ebnf grammar") and sql["num_forced"] >= 1
    assert re.fullmatch(r"SELECT (name|age|city)(, (name|age|city))* FROM employees( WHERE [^;]+)?;(<\|im_end\|>)?",
                        sql["text"])
    assert all(step["state"].endswith(("▸", "▸ ✓")) for step in sql["steps"])
    menu = run.stream_text(run.cell_with("jsonschema.validate(menu, MENU)"))
    assert int(re.search(r"depth: (\d+) \| kind: grammar", menu).group(1)) >= 2


def test_04_radix_cache_tree_hit_rate_and_eviction():
    run = executed("04_inside_the_radix_cache")
    assert run.errors() == []
    [main] = run.widgets(run.cell_with("tree = CacheTree(engine)"))
    [small] = run.widgets(run.cell_with("small_tree = CacheTree(small)"))
    main, small = main["cache"], small["cache"]
    # the few-shot prefix is one node that every later program hit
    prefix = [n for n in main["nodes"] if n["text"].startswith("<|im_start|>system\nClassify")]
    assert len(prefix) == 1 and prefix[0]["hit_count"] >= 11 and prefix[0]["num_tokens"] > 80
    assert main["hit_rate"] > 0.5 and main["num_running"] == 0
    printed = run.stream_text(run.cell_with("main tree:"))
    assert f"main tree: {main['num_nodes']} nodes" in printed
    # the small pool: 512 slots, full, evicting least recently used leaves
    assert small["num_slots"] == 512 and small["num_evicted_tokens"] > 0 and small["pool_usage"] > 0.5
    assert all(n["lru_rank"] is None or n["is_evictable"] for n in small["nodes"])
    again = run.stream_text(run.cell_with("recent, oldest = "))
    recent, oldest = [(int(a), int(b)) for a, b in re.findall(r"(\d+) of (\d+)", again)]
    assert recent[0] >= recent[1] - 1 and oldest[0] < oldest[1] // 2  # LRU: the old document was evicted
    assert f'data-num-nodes="{main["num_nodes"]}"' in run.static_html(run.cell_with("tree = CacheTree(engine)"))[0]
    measured = eval(run.stream_text(run.cell_with("nocache = ")).strip().splitlines()[-1])  # noqa: S307
    assert measured["cache on"]["prefill"] < measured["cache off"]["prefill"] / 3
    plots = [c for c in run.code_cells() if _has_plot(c)]
    assert len(plots) == 3
    # the tiers: the oldest document comes back from host memory, and the tree shows where each node's KV sits
    comeback = run.stream_text(run.cell_with("oldest = ask(TOPICS[0], on=tiered)"))
    cached, prompt = map(int, re.search(r"(\d+) of (\d+) prompt tokens cached", comeback).groups())
    assert cached >= prompt - 16 and cached > oldest[0]  # all but a last partial page; the pool alone: the start
    [tiered] = run.widgets(run.cell_with("tiered_tree = CacheTree(tiered)"))
    tiered = tiered["cache"]
    assert {"device", "host"} <= {n["tier"] for n in tiered["nodes"]}
    assert tiered["tiers"]["host"]["used_bytes"] > 0 and tiered["tiers"]["disk"]["used_bytes"] > 0
    # a fresh process finds the few-shot prefix on disk: >= 90% of the prompt cached, the same output
    restart = run.stream_text(run.cell_with("first, second = fresh_process(), fresh_process()"))
    (first_cached, prompt_len), (second_cached, second_len) = [
        (int(a), int(b)) for a, b in re.findall(r"(\d+) of (\d+) prompt tokens cached", restart)]
    assert prompt_len == second_len >= 650
    assert first_cached < 0.1 * prompt_len and second_cached >= 0.9 * prompt_len
    assert "same output: True" in restart and re.search(r"second process.*'disk': [1-9]", restart)


def test_05_batch_pipeline_exports_and_matches_run_batch():
    run = executed("05_batch_pipelines")
    assert run.errors() == []
    assert (run.folder / "reviews.jsonl").read_text().count("\n") == 20
    results = [json.loads(line) for line in (run.folder / "notebook_results.jsonl").read_text().splitlines()]
    assert len(results) == 20 and {r["label"] for r in results} <= {"positive", "negative", "mixed"}
    assert "def triage(s, review):" in (run.folder / "triage_pipeline.py").read_text()
    assert "20 rows; identical to run_batch in this notebook: True" in run.stream_text(
        run.cell_with("identical to run_batch"))
    assert _has_plot(run.cell_with("import matplotlib"))


def test_06_remote_backends_agree():
    run = executed("06_remote_backends")
    assert run.errors() == []
    three = run.stream_text(run.cell_with("backends = {"))
    assert "same text from all three backends: True" in three
    [city] = _programs(run, "--backend endpoint")
    assert _finished(city) and city["states"][0]["variables"]["city"]
    chat = run.stream_text(run.cell_with("chat = sgl.OpenAI"))
    assert "'num_calls': 2" in chat and "UnsupportedFeatureError" in chat and "select" in chat
    assert "server stopped" in run.stream_text(run.cell_with("server.terminate()"))


def test_07_images_reuses_the_pictures_kv_and_reads_a_clip():
    run = executed("07_images")
    assert run.errors() == []
    setup = run.stream_text(run.cell_with("real_model = Path("))
    assert "TINY RANDOM-WEIGHT" in setup or "Using the real SmolVLM" in setup  # says which model answers
    lines = run.stream_text(run.cell_with("for question in QUESTIONS")).splitlines()
    cached = [int(line.split("from cache")[1].split("|")[0]) for line in lines if "from cache" in line]
    prompt = [int(line.split("prompt")[1].split("tokens")[0]) for line in lines if "from cache" in line]
    assert len(cached) == 4 and cached[0] < prompt[0] - 60  # the first question computes the picture's rows
    assert all(c > prompt[0] - 20 for c in cached[1:])  # later ones start past the picture, from the cache
    assert lines[-1].startswith("vision encoder calls: 1 for 4 questions")
    [tree] = [w for w in run.widgets(run.cell_with("tree = CacheTree")) if "cache" in w]  # (not a progress bar)
    image_nodes = [n for n in tree["cache"]["nodes"] if n["num_image_tokens"]]
    assert image_nodes  # the cache tree labels the nodes that hold image rows
    [caption] = _programs(run, "Describe the picture in one sentence.")
    assert _finished(caption)
    [image] = [s for s in caption["states"][0]["segments"] if "thumbnail" in s]
    assert image["thumbnail"].startswith("data:image/png;base64,") and image["num_tokens"] > 60
    [watched] = _programs(run, "Where does the ball go?")
    assert _finished(watched) and len([s for s in watched["states"][0]["segments"] if "thumbnail" in s]) == 4
    assert run.stream_text(run.cell_with('["num_images"]')).startswith("4 frames went in as images")
    assert run.seconds < 60
