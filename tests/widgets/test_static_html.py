"""Static HTML of the program view (no widget frontend): the same facts as the live view, escaped."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import pytest

from sgnb.widgets.program_data import program_data
from sgnb.widgets.static_html import program_html, render_program_html
from tests.widgets.waiting import wait_finished


class _Collect(HTMLParser):
    """Every start tag's attributes, and the text of each state's token spans (labels left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[dict] = []
        self.stack: list[dict] = []
        self.texts: dict[str, str] = {}
        self.state: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {"tag": tag, **dict(attrs)}
        self.tags.append(attrs)
        self.stack.append(attrs)
        if attrs.get("class") == "sgnb-text":
            self.state = attrs["data-state"]
            self.texts[self.state] = ""

    def handle_endtag(self, tag):
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1].get("class") == "sgnb-tok":
            self.texts[self.state] += data


@pytest.mark.slow
def test_program_html_shows_fork_tree_spans_and_token_kinds(engine, backend, fork_program, run_traced):
    snap = wait_finished(run_traced(fork_program, topic="tides"))
    data = program_data(snap, engine.tokenizer)
    html = program_html(snap, engine.tokenizer)
    assert html == render_program_html(data)
    page = _Collect()
    page.feed(html)
    forks = [t for t in page.tags if t.get("class") == "sgnb-fork-node"]
    assert [(t["data-state"], t["data-depth"]) for t in forks] == [(s["id"], str(s["depth"])) for s in data["states"]]
    spans = [t["data-var"] for t in page.tags if t.get("class") == "sgnb-span"]
    assert spans == ["intro", "verdict", "fact", "fact"]  # root's own spans, then each fork's own gen
    kinds = {t["data-kind"] for t in page.tags if t.get("class") == "sgnb-tok"}
    assert {"computed", "generated", "unsent"} <= kinds
    legend = {t["data-kind"]: int(t["data-tokens"]) for t in page.tags if "data-tokens" in t and t["tag"] == "span"
              and t.get("data-kind") in ("cache", "computed", "generated", "forced")}
    assert legend == {k: data["totals"][k] for k in ("cache", "computed", "generated", "forced")}
    # the root's whole text, and each fork's own text after the fork point (its block starts on a new line)
    assert page.texts == {s["id"]: s["text"][s["fork_start"]:].removeprefix("\n") if s["depth"] else s["text"]
                          for s in data["states"]}
    tips = [t["title"] for t in page.tags if t.get("class") == "sgnb-tok" and "logprob" in t.get("title", "")]
    assert tips and all("top: " in tip for tip in tips)


def test_user_text_is_escaped():
    snap = {"id": "s0", "text": "<script>alert(1)</script> & more", "spans": [], "children": [],
            "variables": {"x": "<b>"}, "partial_variables": {}, "is_finished": True, "error": None}
    html = program_html(snap)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html


def test_static_renderers_do_not_import_ipywidgets():
    code = ("import sys, sgnb.widgets.static_html, sgnb.widgets; "
            "assert 'ipywidgets' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
