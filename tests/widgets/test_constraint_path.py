"""ConstraintPath: a constrained gen's trace, step by step (forced runs, allowed counts, masked alternatives)."""

from __future__ import annotations

import importlib.util

import pytest

from sgnb.widgets import ConstraintPath
from sgnb.widgets.constraint_data import constraint_data
from sgnb.widgets.static_html import constraint_html

# A trace in the engine's format (meta_info["constraint_trace"]) for the regex `\{"a": [0-9]+\}` on 3 digits.
TRACE = [
    {"state": 0, "num_allowed": 1, "token_id": 90, "token": '{"', "forced": True, "masked_top": []},
    {"state": 2, "num_allowed": 1, "token_id": 64, "token": 'a": ', "forced": True, "masked_top": []},
    {"state": 6, "num_allowed": 10, "token_id": 19, "token": "4", "forced": False,
     "masked_top": [[" four", -1.5], ["\n", -2.25]]},
    {"state": 7, "num_allowed": 11, "token_id": 20, "token": "2", "forced": False, "masked_top": [[",", -0.5]]},
    {"state": 7, "num_allowed": 1, "token_id": 95, "token": "}", "forced": True, "masked_top": []},
]


def test_forced_and_sampled_runs_are_grouped_in_order():
    data = constraint_data({"constraint_trace": TRACE})
    assert data["text"] == '{"a": 42}'
    assert [(s["forced"], s["text"], s["num_tokens"], s["first_step"]) for s in data["segments"]] == [
        (True, '{"a": ', 2, 0), (False, "42", 2, 2), (True, "}", 1, 4)]
    assert data["num_steps"] == 5 and data["num_forced"] == 3 and data["num_states"] == 4
    assert [s["segment"] for s in data["steps"]] == [0, 0, 1, 1, 2]
    assert data["steps"][2]["masked_top"] == [[" four", -1.5], ["\n", -2.25]]


def test_static_and_widget_views_hold_every_step():
    from html.parser import HTMLParser

    html = constraint_html(TRACE)
    forced_flags: list[str] = []

    class Steps(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if attrs.get("class") == "sgnb-step":
                forced_flags.append(attrs["data-forced"])

    Steps().feed(html)
    assert forced_flags == ["true", "true", "false", "false", "true"]
    assert "&quot; four&quot; -1.50" in html  # masked alternatives, escaped
    view = ConstraintPath(TRACE, title="answer")
    assert view.trace == constraint_data(TRACE) and view.title == "answer"
    assert view.static_html() == html
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(view)
    text = console.export_text()
    assert "5 tokens, 3 forced" in text and '"a\\": " forced' in text


# A grammar's trace (the engine's format): the state is the grammar position, the end of the text matched so far.
GRAMMAR_TRACE = [
    {"state": "▸", "num_allowed": 1, "token_id": 59, "token": "[", "forced": True, "masked_top": []},
    {"state": "[▸", "num_allowed": 10, "token_id": 19, "token": "4", "forced": False, "masked_top": []},
    {"state": "[4▸", "num_allowed": 12, "token_id": 20, "token": "2", "forced": False,
     "masked_top": [[" and", -0.75]]},
    {"state": "[42▸", "num_allowed": 1, "token_id": 61, "token": "]", "forced": False, "masked_top": []},
    {"state": "[42]▸ ✓", "num_allowed": 1, "token_id": 2, "token": "<|im_end|>", "forced": False, "masked_top": []},
]


def test_grammar_trace_shows_grammar_positions_and_counts_single_choice_steps():
    meta_info = {"constraint": {"kind": "grammar", "source": "lark", "is_complete": True},
                 "constraint_trace": GRAMMAR_TRACE}
    data = constraint_data(meta_info)
    assert data["kind"] == "grammar" and data["text"] == "[42]<|im_end|>"
    # every grammar position is new, so distinct states say nothing: the views count single-choice steps
    assert data["num_states"] is None and data["num_single_choice"] == 3
    assert data["state_label"] == "grammar position" and data["summary"] == "lark grammar, 3 single-choice steps"
    assert constraint_data(GRAMMAR_TRACE)["summary"] == "grammar, 3 single-choice steps"  # string states: a grammar
    fsm = constraint_data({"constraint": {"kind": "fsm"}, "constraint_trace": TRACE})
    assert fsm["kind"] == "fsm" and fsm["summary"] == "4 FSM states" and constraint_data(TRACE) == fsm
    html = constraint_html(meta_info)
    assert 'data-kind="grammar"' in html and "lark grammar, 3 single-choice steps" in html
    assert "grammar position</th>" in html and "[42]▸ ✓" in html and "FSM" not in html
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(ConstraintPath(meta_info))
    assert "grammar position" in console.export_text()


def test_unconstrained_or_malformed_input_is_refused():
    with pytest.raises(ValueError, match="no 'constraint_trace': the gen was not constrained"):
        constraint_data({"prompt_tokens": 3})
    with pytest.raises(ValueError, match=r"step 1 lacks \['forced'\]"):
        constraint_data([TRACE[0], {k: v for k, v in TRACE[1].items() if k != "forced"}])
    with pytest.raises(ValueError, match="expected a constraint trace"):
        constraint_data("not a trace")
    with pytest.raises(ValueError, match=r"\['kind'\] must be one of fsm, grammar, got 'pda'"):
        constraint_data({"constraint": {"kind": "pda"}, "constraint_trace": TRACE})


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sgnb.engine.constraint") is None,
                    reason="constrained decoding (sgnb/engine/constraint.py) is not integrated into the engine yet")
def test_real_regex_gen_trace(engine):
    forced_before = engine.stats()["num_forced_tokens"]
    result = engine.generate("The answer as JSON:", {"max_new_tokens": 16, "temperature": 0,
                                                      "regex": r'\{"answer": [0-9]{1,3}\}'})
    view = ConstraintPath(result["meta_info"])
    data = view.trace
    assert data["text"] == result["text"]
    assert data["num_steps"] == result["meta_info"]["completion_tokens"]
    assert data["num_forced"] == engine.stats()["num_forced_tokens"] - forced_before >= 1
    assert any(seg["forced"] and "answer" in seg["text"] for seg in data["segments"])  # the key is a forced chain
    assert all(step["num_allowed"] >= 1 for step in data["steps"])


@pytest.mark.slow
def test_real_grammar_gen_trace(engine):
    result = engine.generate("Q: What is 6 times 7?\nA:", {"max_new_tokens": 16, "temperature": 0,
                                                           "ebnf": 'root ::= " The answer is " [0-9]+ "."'})
    view = ConstraintPath(result["meta_info"])
    data = view.trace
    assert data["kind"] == "grammar" and data["summary"].startswith("ebnf grammar, ")
    assert data["text"] == result["text"] and data["num_steps"] == result["meta_info"]["completion_tokens"]
    assert data["num_forced"] >= 1 and data["steps"][0]["forced"]   # " The answer is " is forced
    assert all(isinstance(s["state"], str) for s in data["steps"]) and "grammar position</th>" in view.static_html()
    engine.check_integrity()
