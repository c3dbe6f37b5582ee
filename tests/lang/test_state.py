"""ProgramState / ProgramStateGroup semantics on the real engine: async appends, waiting reads, forks,
scopes, roles, streaming, errors and snapshots."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

import sgnb as sgl
from sgnb.lang.backends.errors import UnsupportedFeatureError
from sgnb.lang.interpreter import ProgramError, UnknownVariableError

pytestmark = pytest.mark.slow


def test_append_returns_at_once_and_read_waits(backend):
    timings = {}

    @sgl.function
    def prog(s):
        s += "Count from one to ten: one, two,"
        t0 = time.monotonic()
        s += sgl.gen("x", max_tokens=12, ignore_eos=True)
        timings["append"] = time.monotonic() - t0
        timings["was_pending"] = "x" not in s.stream_executor.data.variables
        t0 = time.monotonic()
        timings["value"] = s["x"]
        timings["read"] = time.monotonic() - t0

    prog.run(temperature=0)
    assert timings["was_pending"]
    assert timings["append"] < 0.05 < timings["read"]
    assert timings["value"]


def test_setitem_contains_and_unknown_variable(backend):
    @sgl.function
    def prog(s):
        s += "Hello" + sgl.gen("greeting", max_tokens=2)
        s["mine"] = 42
        assert "greeting" in s and "mine" in s and "other" not in s
        assert s["mine"] == 42
        s["nope"]  # never produced: must raise, not hang

    with pytest.raises(UnknownVariableError, match=r"unknown variable 'nope'.*'greeting'") as info:
        prog.run(temperature=0)
    assert isinstance(info.value, KeyError)


def test_unknown_variable_read_after_run(backend):
    @sgl.function
    def prog(s):
        s += "Hi" + sgl.gen("a", max_tokens=1)

    state = prog.run(temperature=0)
    with pytest.raises(KeyError, match="unknown variable 'b'"):
        state["b"]
    assert state.get_meta_info("a")["completion_tokens"] == 1


def test_variables_can_be_set_after_the_run_without_changing_the_text(backend):
    @sgl.function
    def prog(s):
        s += "Pick a number: " + sgl.select("n", ["1", "2", "3"]) + "."
        forks = s.fork(2)
        forks += " Again: " + sgl.select("m", ["4", "5"])
        return forks

    state = prog.run(temperature=0)
    text, chosen = state.text(), state["n"]
    state["n"] = int(state["n"])  # post-processing, as in SGLang
    state.set_var("extra", [1, 2])
    assert state["n"] == state.get_var("n") == int(chosen)
    assert "extra" in state and state["extra"] == [1, 2]
    assert state.text() == text  # setting a variable leaves the text as it is (as SGLang's set_var does)
    snap = state.snapshot()
    assert snap["variables"]["n"] == int(chosen) and snap["variables"]["extra"] == [1, 2]
    assert snap["text"] == text and snap["is_finished"]
    fork = state.ret_value[0]  # a fork ended with its program: the same holds
    fork["m"] = int(fork["m"])
    assert fork["m"] in (4, 5) and fork.snapshot()["variables"]["m"] == fork["m"]
    with pytest.raises(RuntimeError, match="has ended; it accepts no more text"):
        state += "more text"
    assert state.text() == text


def test_fork_zero_and_bad_join_mode_are_rejected(backend):
    @sgl.function
    def fork_zero(s):
        s += "x"
        s.fork(0)

    with pytest.raises(ValueError, match="fork size must be a positive integer, got 0"):
        fork_zero.run()

    @sgl.function
    def bad_join(s):
        s += "x"
        s.fork(2).join(mode="merge")

    with pytest.raises(ValueError, match="unknown join mode 'merge'"):
        bad_join.run()


def test_program_error_releases_waiting_readers(backend):
    started = threading.Event()

    @sgl.function
    def prog(s):
        s += "The sky is" + sgl.gen("a", max_tokens=4)
        started.wait(5)
        s["a"]
        raise RuntimeError("boom part-way")

    state = prog.run(stream=True, temperature=0)
    outcome = {}

    def reader():
        try:
            state["never_made"]
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    started.set()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome["error"], ProgramError)
    assert "boom part-way" in str(outcome["error"])
    assert isinstance(state.error(), RuntimeError) and str(state.error()) == "boom part-way"
    assert state["a"]  # what was produced before the error stays readable


def test_backend_error_is_stored_and_raised_by_run(backend):
    @sgl.function
    def prog(s):
        s += "Describe this picture: " + sgl.image(b"\x89PNG not really") + sgl.gen("d", max_tokens=4)
        s += "more text"

    with pytest.raises(UnsupportedFeatureError, match="text-only"):
        prog.run()

    state = prog.run(stream=True)
    with pytest.raises(ProgramError, match="text-only"):
        state["d"]
    assert isinstance(state.error(), UnsupportedFeatureError)
    assert "more text" not in state.text()  # items after the error are skipped


def test_copy_continues_independently(backend):
    @sgl.function
    def prog(s):
        s += "Alice says:"
        other = s.copy()
        s += " hello" + sgl.gen("a", max_tokens=2)
        other += " goodbye" + sgl.gen("b", max_tokens=2)
        return other

    state = prog.run(temperature=0)
    other = state.ret_value
    assert state.text().startswith("Alice says: hello") and "goodbye" not in state.text()
    assert other.text().startswith("Alice says: goodbye") and "b" in other and "b" not in state


def test_var_scope_and_role_scopes(backend, engine):
    @sgl.function
    def prog(s):
        with s.user():
            s += "Say a word. "
            with s.var_scope("tail"):
                s += "Just one."
        with s.assistant():
            s += sgl.gen("word", max_tokens=4)

    state = prog.run(temperature=0)
    assert state["tail"] == "Just one."
    messages = state.messages()
    assert messages[0] == {"role": "user", "content": "Say a word. Just one."}
    assert messages[1]["role"] == "assistant" and messages[1]["content"] == state["word"].lstrip()
    assert state.text() == engine.apply_chat_template(messages, add_generation_prompt=False)


def test_begin_end_forms_and_role_misuse(backend):
    @sgl.function
    def prog(s):
        s += sgl.user_begin() + "Hi" + sgl.user_end()
        s += sgl.assistant_begin() + sgl.gen("a", max_tokens=2) + sgl.assistant_end()

    state = prog.run(temperature=0)
    assert [m["role"] for m in state.messages()] == ["user", "assistant"]

    @sgl.function
    def nested(s):
        s += sgl.user_begin() + sgl.assistant_begin()

    with pytest.raises(ValueError, match="cannot open role 'assistant' while role 'user' is open"):
        nested.run()

    @sgl.function
    def unbalanced(s):
        s += sgl.assistant_end()

    with pytest.raises(ValueError, match=r"assistant_end\(\) without a matching assistant_begin"):
        unbalanced.run()


def test_forks_accept_lambdas_and_concate_and_append(backend):
    @sgl.function
    def prog(s):
        s += "List:"
        forks = s.fork(3)
        forks += lambda i: f" item{i}"
        forks.join(mode="concate_and_append")
        s += " end"

    state = prog.run()
    assert state.text() == "List: item0 item1 item2 end"
    assert state.snapshot()["num_cache_commits"] == 1


def test_gen_n_and_logprobs(backend):
    @sgl.function
    def prog(s):
        s += "One, two, three,"
        s += sgl.gen("many", n=3, max_tokens=3, temperature=1.0)
        s += sgl.gen("lp", max_tokens=3, return_logprob=True, top_logprobs_num=2, temperature=0)

    state = prog.run()
    many = state["many"]
    assert isinstance(many, list) and len(many) == 3
    meta = state.get_meta_info("lp")
    assert len(meta["output_token_logprobs"]) == meta["completion_tokens"]
    assert all(len(top) == 2 for top in meta["output_top_logprobs"])
    assert state.text().endswith(many[0] + state["lp"])  # the text continues with the first sample


def test_text_async_iter_streams_a_variable(backend):
    @sgl.function
    def prog(s):
        s += "Once upon a time" + sgl.gen("story", max_tokens=16, ignore_eos=True)

    async def collect():
        state = prog.run(stream=True, temperature=0)
        pieces = [p async for p in state.text_async_iter("story")]
        return state, pieces

    state, pieces = asyncio.run(collect())
    assert len(pieces) > 1 and "".join(pieces) == state["story"]


def test_text_iter_of_unknown_variable_raises(backend):
    @sgl.function
    def prog(s):
        s += "Hi" + sgl.gen("a", max_tokens=2)

    state = prog.run(stream=True, temperature=0)
    with pytest.raises(KeyError, match="unknown variable 'zzz'"):
        list(state.text_iter("zzz"))


def test_snapshot_spans_point_at_values(backend):
    @sgl.function
    def prog(s):
        s += sgl.user("Pick a colour.")
        s += sgl.assistant("I pick " + sgl.select("colour", ["red", "blue"]) + ". " + sgl.gen("why", max_tokens=4))

    state = prog.run(temperature=0)
    snap = state.snapshot()
    json.dumps(snap)  # plain data
    text = snap["text"]
    by_name = {sp["name"]: sp for sp in snap["spans"]}
    assert text[by_name["colour"]["start"] : by_name["colour"]["end"]] == state["colour"]
    assert text[by_name["why"]["start"] : by_name["why"]["end"]] == state["why"]
    assert by_name["colour"]["kind"] == "select" and by_name["why"]["kind"] == "gen"
    assert "normalized_prompt_logprobs" in by_name["colour"]["meta_info"]
    assert "cached_tokens" in by_name["why"]["meta_info"]
    roles = [r["role"] for r in snap["role_spans"]]
    assert roles == ["user", "assistant"]
    assert snap["is_finished"] and snap["error"] is None and snap["parent_id"] is None


def test_run_waits_for_forks_nobody_joined(backend):
    @sgl.function
    def prog(s):
        s += "Three colours:"
        forks = s.fork(2)
        forks += sgl.gen("c", max_tokens=3)
        return forks

    state = prog.run(temperature=0)
    forks = state.ret_value
    assert all(f.stream_executor.is_finished for f in forks)
    assert all("c" in f.stream_executor.data.variables for f in forks)
    for f in forks:  # their worker threads exit
        f.stream_executor._worker.join(5)
        assert not f.stream_executor._worker.is_alive()
