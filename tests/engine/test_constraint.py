"""Constrained decoding on the real SmolLM2 model: regexes, JSON schemas, jump-forward, bad input."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.constrained.json_schemas import SCHEMAS
from tests.engine.test_engine import extra_engine
from tests.constrained.regex_strategies import regexes

pytestmark = pytest.mark.slow


def _prompt(engine, task: str) -> str:
    return engine.apply_chat_template([{"role": "user", "content": task}])


def _check_output(pattern: str, result: dict) -> None:
    text = result["text"]
    # finished or not, the budget keeps every output complete
    assert re.fullmatch(pattern, text), f"{text!r} does not fullmatch {pattern!r}"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=regexes(max_leaves=5), seed=st.integers(0, 2**16), temperature=st.sampled_from([0.0, 0.7, 1.0, 1.5]))
def test_random_regexes_constrain_real_sampling(engine, pattern, seed, temperature):
    result = engine.generate(_prompt(engine, "Write something."), {
        "regex": pattern, "temperature": temperature, "sampling_seed": seed, "max_new_tokens": 24})
    _check_output(pattern, result)
    engine.check_integrity()


def test_mixed_batch_of_constrained_and_free_requests(engine):
    prompt = _prompt(engine, "What is your favourite number and why?")
    params = [{"regex": r"[0-9]{1,3}", "temperature": 0, "max_new_tokens": 8},
              {"temperature": 0, "max_new_tokens": 8},
              {"regex": r"(yes|no), because [a-z ]{1,20}\.", "temperature": 0.8, "sampling_seed": 3,
               "max_new_tokens": 24}]
    constrained, free, sentence = engine.generate([prompt] * 3, params)
    assert re.fullmatch(r"[0-9]{1,3}", constrained["text"])
    assert "constraint" not in free["meta_info"]
    _check_output(params[2]["regex"], sentence)
    engine.check_integrity()


def test_every_schema_of_the_suite_gives_valid_json(engine):
    names = list(SCHEMAS)
    prompts = [_prompt(engine, f"Return a JSON value for the '{name}' schema.") for name in names]
    params = [{"json_schema": _schema_json(SCHEMAS[name]), "temperature": 0, "max_new_tokens": 96}
              for name in names]
    results = engine.generate(prompts, params)
    for name, result in zip(names, results):
        # even outputs that used the whole budget are complete: the budget steers them to a close
        value = json.loads(result["text"])
        jsonschema.validate(value, _schema_dict(SCHEMAS[name]))
    engine.check_integrity()


def test_output_is_closed_within_a_tight_budget(engine):
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}, "required": ["email"]}
    result = engine.generate(_prompt(engine, "Give me an email address as JSON."), {
        "json_schema": schema, "temperature": 1.2, "sampling_seed": 7, "max_new_tokens": 14, "jump_forward": False})
    assert result["meta_info"]["completion_tokens"] <= 14
    jsonschema.validate(json.loads(result["text"]), schema)


# open-ended schemas: only the token limit bounds them, so the budget rule must close them
OPEN_OBJECT_LIST = {"type": "array", "items": {
    "type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "tags"]}}
LONG_STRINGS = {"type": "object", "properties": {"title": {"type": "string"}, "summary": {"type": "string"},
                                                 "body": {"type": "string", "minLength": 20}},
                "required": ["title", "summary", "body"]}


@pytest.mark.parametrize("temperature, seed", [(0.0, None), (0.9, 11)], ids=["greedy", "sampled"])
def test_outputs_stopped_by_the_token_limit_are_complete_json(engine, temperature, seed):
    schemas = [OPEN_OBJECT_LIST, LONG_STRINGS]
    prompt = _prompt(engine, "Return a long JSON value with many items and long texts.")
    cases = [(schema, budget) for schema in schemas for budget in (23, 31, 40)]
    results = engine.generate([prompt] * len(cases), [
        {"json_schema": schema, "temperature": temperature, "sampling_seed": seed, "max_new_tokens": budget}
        for schema, budget in cases])
    for (schema, budget), result in zip(cases, results):
        meta = result["meta_info"]
        assert meta["completion_tokens"] <= budget
        jsonschema.validate(json.loads(result["text"]), schema)
        assert meta["constraint"]["is_complete"] is True
    # the open schemas run into the limit: the budget rule, not the model, closed them
    assert sum(r["meta_info"]["finish_reason"]["type"] == "length" for r in results) >= len(cases) // 2
    engine.check_integrity()


def test_outputs_stopped_by_the_context_length_are_complete_json(smollm2_path):
    """The context, not max_new_tokens, is the tighter limit: the budget rule closes the output within it."""
    with extra_engine(smollm2_path) as probe:
        prompt = _prompt(probe, "Return a long JSON value with many items and long texts.")
        prompt_len = len(probe.tokenizer.encode(prompt))
    room = 30                                     # tokens the context leaves after the prompt
    with extra_engine(smollm2_path, max_context_len=prompt_len + room) as small:
        results = small.generate([prompt] * 2, [{"json_schema": schema, "temperature": 0, "max_new_tokens": 200}
                                                for schema in (OPEN_OBJECT_LIST, LONG_STRINGS)])
        for schema, result in zip((OPEN_OBJECT_LIST, LONG_STRINGS), results):
            meta = result["meta_info"]
            assert meta["completion_tokens"] <= room
            jsonschema.validate(json.loads(result["text"]), schema)
            assert meta["constraint"]["is_complete"] is True
        assert any(r["meta_info"]["finish_reason"]["type"] == "length" for r in results)   # the context ended it
        with pytest.raises(ValueError, match="leaves room for only"):      # cannot close within the context
            small.generate(prompt, {"regex": "[0-9]{40}", "max_new_tokens": 60})
        small.check_integrity()


def test_an_output_a_stop_string_cuts_off_is_reported_incomplete(engine):
    pattern = r"[a-z ]{5,60}\."
    result = engine.generate(_prompt(engine, "Describe the sea in one sentence."), {
        "regex": pattern, "temperature": 0, "max_new_tokens": 40, "stop": [" "]})
    assert result["meta_info"]["finish_reason"] == {"type": "stop", "matched": " "}
    assert not re.fullmatch(pattern, result["text"])
    assert result["meta_info"]["constraint"]["is_complete"] is False
    engine.check_integrity()


def test_a_stop_string_inside_jump_forward_text_ends_the_output(engine):
    """The forced text ". The end: " holds the stop string: the request ends there, not tokens later."""
    result = engine.generate(_prompt(engine, "Is the sea blue? Answer yes or no."), {
        "regex": r"(yes|no)\. The end: [a-z]{3,10}\.", "temperature": 0, "max_new_tokens": 30,
        "stop": ["The end"]})
    assert result["text"] in ("yes. ", "no. ")
    assert result["meta_info"]["finish_reason"] == {"type": "stop", "matched": "The end"}
    assert result["meta_info"]["constraint"]["num_jumps"] >= 1
    engine.check_integrity()


def test_budget_below_the_shortest_valid_output_is_refused(engine):
    with pytest.raises(ValueError, match="too small for this constraint"):
        engine.generate("Hi", {"regex": "[0-9]{40}", "max_new_tokens": 3})
    engine.check_integrity()


def test_jump_forward_outputs_stay_valid_and_save_forward_passes(engine):
    schema = SCHEMAS["character"]
    prompt = _prompt(engine, "Describe a fantasy character as JSON.")
    runs = {}
    for jump in (True, False):
        before = engine.stats()["num_forward_passes"]
        result = engine.generate(prompt, {"json_schema": _schema_json(schema), "temperature": 0,
                                          "max_new_tokens": 160, "jump_forward": jump})
        runs[jump] = (result, engine.stats()["num_forward_passes"] - before)
        jsonschema.validate(json.loads(result["text"]), _schema_dict(schema))
    (with_jump, passes_jump), (without, passes_plain) = runs[True], runs[False]
    assert with_jump["meta_info"]["constraint"]["num_forced_tokens"] > 0
    assert without["meta_info"]["constraint"]["num_forced_tokens"] == 0
    assert passes_jump < passes_plain
    forced = [s for s in with_jump["meta_info"]["constraint_trace"] if s["forced"]]
    assert forced and all(s["num_allowed"] == 1 for s in forced)
    engine.check_integrity()


def test_pretty_json_is_indented_and_jump_forward_writes_its_layout(engine):
    schema = SCHEMAS["city"]
    result = engine.generate(_prompt(engine, "Describe Paris as JSON."), {
        "json_schema": schema, "json_whitespace": "pretty", "temperature": 0, "max_new_tokens": 120})
    text = result["text"]
    jsonschema.validate(json.loads(text), schema)
    assert text.startswith('{\n    "name": "') and text.endswith("\n}")
    assert '\n    "top 3 landmarks": [' in text
    # the newline-and-indent runs are forced: they come from jump-forward, not sampling
    assert result["meta_info"]["constraint"]["num_forced_tokens"] > 0
    engine.check_integrity()


def _generate_counting_passes(engine, prompt: str, params: dict, draft: bool) -> tuple[dict, int]:
    engine.config.draft_held_back = draft          # read when a request is submitted
    try:
        before = engine.stats()["num_forward_passes"]
        result = engine.generate(prompt, params)
        return result, engine.stats()["num_forward_passes"] - before
    finally:
        engine.config.draft_held_back = True


def test_held_back_tokens_the_model_confirms_save_their_forward_pass(engine):
    # pretty JSON: each forced run ends in ' "' or ': ', held back (a longer token could merge), drafted
    schema = SCHEMAS["city"]
    prompt = _prompt(engine, "Describe Paris as JSON.")
    params = {"json_schema": schema, "json_whitespace": "pretty", "temperature": 0, "max_new_tokens": 120}
    drafted, passes_drafted = _generate_counting_passes(engine, prompt, params, draft=True)
    held, passes_held = _generate_counting_passes(engine, prompt, params, draft=False)
    jsonschema.validate(json.loads(drafted["text"]), schema)
    assert drafted["text"] == held["text"] and drafted["output_ids"] == held["output_ids"]
    summary, summary_held = drafted["meta_info"]["constraint"], held["meta_info"]["constraint"]
    assert summary["num_held_back"] == summary_held["num_held_back"] > 0
    assert summary["num_drafted"] == summary["num_held_back"] and summary_held["num_drafted"] == 0
    accepted = summary["num_draft_accepted"]
    assert accepted > 0
    # held back, a token costs a pass of its own; drafted and confirmed, it rides in its jump's pass
    assert passes_held - passes_drafted == accepted
    # a confirmed draft token was the model's pick: it is traced as sampled, not forced
    assert sum(not s["forced"] for s in drafted["meta_info"]["constraint_trace"]) == \
        sum(not s["forced"] for s in held["meta_info"]["constraint_trace"])
    engine.check_integrity()


def test_a_draft_the_model_declines_is_dropped_with_its_kv(engine):
    # "Answer: " ends in a space that " Paris" would absorb: the space is drafted, the model picks " Paris"
    pattern = "Answer: [A-Za-z ]+"
    prompt = _prompt(engine, "What is the capital of France? Reply with one word.")
    params = {"regex": pattern, "temperature": 0, "max_new_tokens": 12}
    free_before = engine.stats()["num_free_slots"] + engine.stats()["tree_tokens"]
    drafted, passes_drafted = _generate_counting_passes(engine, prompt, params, draft=True)
    held, passes_held = _generate_counting_passes(engine, prompt, params, draft=False)
    summary = drafted["meta_info"]["constraint"]
    assert summary["num_drafted"] == 1 and summary["num_draft_accepted"] == 0
    assert drafted["output_ids"] == held["output_ids"] and passes_drafted == passes_held
    assert re.fullmatch(pattern, drafted["text"]) and not drafted["text"].startswith("Answer:  ")
    engine.check_integrity()   # the declined draft's slot went back to the pool
    assert engine.stats()["num_free_slots"] + engine.stats()["tree_tokens"] == free_before


@pytest.mark.parametrize("max_prefill_tokens", [6, 4], ids=["drafts-chunked", "too-small-to-draft"])
def test_chunked_extends_keep_each_draft_whole(engine, smollm2_path, max_prefill_tokens):
    # with 6 tokens a step, prompts and jumps are split into chunks, never inside a draft (or right before
    # it); with 4, a draft and the row before it might not fit one step, so nothing is drafted
    schema = SCHEMAS["city"]
    prompt = _prompt(engine, "Describe Paris as JSON.")
    params = {"json_schema": schema, "json_whitespace": "pretty", "temperature": 0, "max_new_tokens": 120}
    reference = engine.generate(prompt, params)
    with extra_engine(smollm2_path, max_prefill_tokens=max_prefill_tokens) as chunked:
        out = chunked.generate(prompt, params)
        chunked.check_integrity()
    assert out["output_ids"] == reference["output_ids"]
    summary = out["meta_info"]["constraint"]
    assert summary["num_held_back"] > 0
    assert (summary["num_drafted"] > 0) == (max_prefill_tokens > 4)
    engine.check_integrity()


def test_drafted_json_in_a_tight_pool_stays_valid_and_leaks_nothing(engine, smollm2_path):
    # sampled pretty JSON from four programs whose KV cannot all stay cached: evictions interleave with
    # jumps and drafts
    schema = SCHEMAS["city"]
    prompts = [_prompt(engine, f"Describe {city} as JSON.") for city in ("Paris", "Tokyo", "Lima", "Oslo")]
    params = [{"json_schema": schema, "json_whitespace": "pretty", "temperature": 0.9, "sampling_seed": seed,
               "max_new_tokens": 90} for seed in range(4)]
    with extra_engine(smollm2_path, max_total_tokens=260) as tight:
        out = tight.generate(prompts, params)
        stats = tight.stats()
        tight.check_integrity()
    for result in out:
        jsonschema.validate(json.loads(result["text"]), schema)
    assert stats["num_evicted_tokens"] > 0
    assert sum(r["meta_info"]["constraint"]["num_drafted"] for r in out) > 0
    engine.check_integrity()


def test_forced_tokens_that_spend_the_budget_end_the_request(engine):
    # after every sampled "a" the "0" is forced; the 24th token is a forced one and must be the last
    prompt = _prompt(engine, "Write something.")
    result = engine.generate(prompt, {"regex": "(?:a0)*", "temperature": 0, "max_new_tokens": 24})
    assert result["meta_info"]["completion_tokens"] <= 24
    assert re.fullmatch("(?:a0)*", result["text"])
    engine.check_integrity()


def test_an_output_forced_whole_at_admission_is_not_sampled_past(engine):
    text = "The answer is 42."
    budget = len(engine.tokenizer.encode(text))
    result = engine.generate(_prompt(engine, "What is the answer?"), {
        "regex": re.escape(text), "temperature": 0, "max_new_tokens": budget})
    assert result["text"] == text and result["meta_info"]["completion_tokens"] == budget
    engine.check_integrity()


def test_trace_records_masked_alternatives(engine):
    result = engine.generate(_prompt(engine, "Is the sky blue?"), {
        "regex": "(yes|no)", "temperature": 0, "max_new_tokens": 4})
    first = result["meta_info"]["constraint_trace"][0]
    assert first["num_allowed"] >= 2 and not first["forced"]
    assert first["masked_top"], "the model's favourite tokens outside yes/no are reported as masked"
    assert all(t not in ("yes", "no") for t, _ in first["masked_top"])


def test_trace_in_a_mixed_batch_is_each_requests_own(engine):
    # unconstrained rows sit between the constrained ones: each trace must come from its own row
    params = {"regex": "(yes|no)", "temperature": 0, "max_new_tokens": 4}
    sky, grass = _prompt(engine, "Is the sky blue?"), _prompt(engine, "Is grass purple?")
    alone = [engine.generate(p, params)["meta_info"]["constraint_trace"] for p in (sky, grass)]
    free = {"temperature": 0, "max_new_tokens": 4}
    results = engine.generate(["Hello", sky, "Count to three:", grass], [free, params, free, params])
    for result, expected in zip((results[1], results[3]), alone):
        trace = result["meta_info"]["constraint_trace"]
        assert trace[0]["masked_top"][0][0] == expected[0]["masked_top"][0][0]
        assert trace[0]["masked_top"][0][1] == pytest.approx(expected[0]["masked_top"][0][1], abs=1e-3)
    assert alone[0][0]["masked_top"] != alone[1][0]["masked_top"]
    engine.check_integrity()


@pytest.mark.parametrize("params, message", [
    ({"regex": "(ab"}, "regex"),
    ({"regex": "a(?=b)"}, "lookahead"),
    ({"json_schema": {"type": "integer", "minimum": 3}}, "minimum"),
    ({"json_schema": {"type": "object", "not": {}}}, "not"),
    ({"json_schema": "{not json"}, "json_schema"),
    ({"json_schema": {"type": "integer"}, "json_whitespace": "[ "}, "regex"),
])
def test_bad_constraints_fail_at_submission_and_engine_keeps_serving(engine, params, message):
    with pytest.raises(ValueError, match=message):
        engine.generate("Hello", {**params, "max_new_tokens": 4})
    assert engine.generate("Hello", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2
    engine.check_integrity()


def test_recursion_deeper_than_the_limit_is_refused(engine):
    deep = {"$defs": {"n": {"type": "object", "properties": {"child": {"$ref": "#/$defs/n"}},
                            "required": ["child"]}}, "$ref": "#/$defs/n"}
    with pytest.raises(ValueError, match="recursion|depth"):
        engine.generate("Hello", {"json_schema": deep, "max_new_tokens": 4})
    engine.check_integrity()


def _schema_dict(schema) -> dict:
    return schema.model_json_schema() if hasattr(schema, "model_json_schema") else schema


def _schema_json(schema) -> str:
    return json.dumps(_schema_dict(schema))
