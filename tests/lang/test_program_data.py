"""ProgramData: a program state's produced data as one value, and what a fork's copy shares."""

from __future__ import annotations

import pytest

from sgnb.lang.program_data import ProgramData


def test_fork_starts_equal_but_appends_do_not_cross():
    parent = ProgramData(text="Q: hi\nA:", cur_role="assistant", cur_role_begin_pos=3)
    parent.messages.append({"role": "user", "content": "hi"})
    parent.variables["x"] = "1"
    parent.meta_info["x"] = {"completion_tokens": 1}
    parent.spans.append({"name": "x", "kind": "gen", "start": 0, "end": 1})
    parent.var_scopes.append(("v", 2))
    parent.images.append("img")

    child = parent.fork()
    assert child.text == parent.text and child.cur_role == "assistant" and child.cur_role_begin_pos == 3
    assert child.variables == {"x": "1"} and child.var_scopes == [("v", 2)] and child.images == ["img"]
    assert child.spans[0] is parent.spans[0]  # recorded elements are shared, containers are not

    child.text += " yes"
    child.variables["y"] = "2"
    child.messages.append({"role": "assistant", "content": "yes"})
    child.spans.append({"name": "y", "kind": "gen", "start": 8, "end": 12})
    child.var_scopes.pop()
    child.images.clear()
    parent.role_spans.append({"role": "user", "start": 0, "end": 2})
    assert parent.text == "Q: hi\nA:" and "y" not in parent.variables and len(parent.messages) == 1
    assert len(parent.spans) == 1 and parent.var_scopes == [("v", 2)] and parent.images == ["img"]
    assert child.role_spans == []


def test_fork_does_not_inherit_streaming_gens_in_progress():
    parent = ProgramData(text="abc")
    parent.partial_vars["g"] = "ab"
    assert parent.fork().partial_vars == {}


def test_role_begin_outside_the_text_is_rejected():
    with pytest.raises(ValueError, match="cur_role_begin_pos"):
        ProgramData(text="ab", cur_role_begin_pos=3)
