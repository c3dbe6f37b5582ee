"""ProgramView's Python-side state for real programs on SmolLM2: live updates, fork tree, token marks."""

from __future__ import annotations

import importlib.util
import time

import pytest

from sgnb.widgets import ProgramView
from sgnb.widgets.program_data import find_state, program_data

pytestmark = pytest.mark.slow


def test_fork_tree_and_variables_of_a_known_program(engine, backend, fork_program, run_traced):
    view = ProgramView()
    state = run_traced(fork_program, topic="penguins")
    view.attach(state)
    assert view.wait(120), "the poller should stop by itself once the program and its forks finish"
    view.detach()
    data = view.program
    assert data["is_finished"] and data["error"] is None
    root = find_state(data, data["root"])
    children = [find_state(data, cid) for cid in root["children"]]
    assert len(data["states"]) == 3 and len(children) == 2
    assert [c["parent_id"] for c in children] == [root["id"]] * 2 and [c["depth"] for c in children] == [1, 1]
    assert root["variables"]["fact"] == [c["variables"]["fact"] for c in children]
    assert [set(c["own_variables"]) for c in children] == [{"fact"}, {"fact"}]  # the intro is inherited
    assert root["variables"]["verdict"] in ("yes", "no")
    assert [s["name"] for s in root["spans"]] == ["intro", "verdict"]
    assert [s["name"] for s in children[0]["spans"]] == ["intro", "fact"]
    for child in children:
        assert child["fork_start"] == root["spans"][0]["end"]
        assert child["text"][:child["fork_start"]] == root["text"][:child["fork_start"]]
    # the trait is exactly the view model of the final snapshot
    assert data == program_data(state.snapshot(), engine.tokenizer)
    # the terminal rendering shows the same fork tree
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(view)
    text = console.export_text()
    assert f"{root['id']} [done] intro, fact, verdict" in text
    assert all(f"{c['id']} [done] fact" in text for c in children)


def test_totals_count_each_token_once(engine, backend, fork_program, run_traced):
    view = ProgramView(run_traced(fork_program, topic="deserts"))
    view.wait(120)
    view.detach()
    totals = view.program["totals"]
    # 6 intro tokens + 5 per fork; the select's choice has no token count
    assert totals["generated"] == 6 + 2 * 5
    assert totals["forced"] == 0
    root = find_state(view.program, view.program["root"])
    intro_meta = root["spans"][0]
    assert totals["cache"] + totals["computed"] >= intro_meta["prompt_tokens"]


def test_text_streams_in_while_the_program_runs(engine, backend, run_traced):
    import sgnb as sgl

    @sgl.function
    def longer(s):
        s += "Once upon a time" + sgl.gen("story", max_tokens=48, ignore_eos=True)

    view = ProgramView(interval=0.1)
    observed: list[tuple[float, int]] = []
    view.observe(lambda change: observed.append((time.monotonic(), len(change["new"]["states"][0]["text"])))
                 if change["new"]["states"] else None, names="program")
    state = run_traced(longer)
    began = time.monotonic()
    view.attach(state)
    assert view.wait(120)
    elapsed = time.monotonic() - began
    view.detach()
    lengths = [n for _, n in observed]
    assert len(set(lengths)) >= 3, f"expected several growing updates, saw lengths {lengths}"
    assert lengths == sorted(lengths)
    assert lengths[-1] == len(state.text())
    # throttled: no more than one update per interval (plus the first and the final one)
    assert view.num_updates <= elapsed / 0.1 + 3
    assert not view.is_live


def test_static_output_is_refreshed_on_detach(engine, backend, fork_program, run_traced):
    view = ProgramView()
    assert 'data-status="empty"' in view.static_html()
    view.attach(run_traced(fork_program, topic="comets"))
    view.wait(120)
    view.detach()
    html = view.static_html()
    assert 'data-status="finished"' in html and 'data-num-states="3"' in html
    data, _ = view._repr_mimebundle_()
    assert data["text/html"] == html and "application/vnd.jupyter.widget-view+json" in data


def test_a_failing_program_stops_the_view_with_its_error(engine, backend, run_traced):
    import sgnb as sgl

    @sgl.function
    def broken(s):
        s += "Hello" + sgl.gen("x", max_tokens=2)
        raise RuntimeError("boom in the program body")

    view = ProgramView(run_traced(broken))
    assert view.wait(60)
    view.detach()
    assert "boom in the program body" in view.program["error"]
    assert "boom in the program body" in view.static_html()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="needs a program state with snapshot"):
        ProgramView().attach(object())
    with pytest.raises(ValueError, match="interval must be > 0"):
        ProgramView(interval=0)


@pytest.mark.skipif(importlib.util.find_spec("sgnb.engine.constraint") is None,
                    reason="constrained decoding (sgnb/engine/constraint.py) is not integrated into the engine yet")
def test_forced_tokens_of_a_regex_gen_are_marked(engine, backend, run_traced):
    import sgnb as sgl

    @sgl.function
    def as_json(s):
        s += "The answer as JSON: " + sgl.gen("j", regex=r'\{"answer": [0-9]{1,3}\}', max_tokens=16)

    state = run_traced(as_json)
    view = ProgramView(state)
    assert view.wait(60)
    view.detach()
    root = view.program["states"][0]
    [span] = root["spans"]
    assert span["has_constraint"], "the span's meta_info lost its constraint_trace (snapshot made it a string?)"
    trace = state.get_meta_info("j")["constraint_trace"]
    forced = [s for s in root["segments"] if s["kind"] == "forced"]
    assert [root["text"][s["start"]:s["end"]] for s in forced] == [t["token"] for t in trace if t["forced"]]
    assert sum(s["num_tokens"] for s in forced) == span["num_forced"] == view.program["totals"]["forced"] >= 1
    assert any("answer" in root["text"][s["start"]:s["end"]] for s in forced)  # the key is a forced chain
