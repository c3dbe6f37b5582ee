"""Grammar constraints (lark, ebnf, recursive JSON schemas) on the real SmolLM2 model through llguidance.

Every output is checked by a parser that shares nothing with the engine's: the `lark` package's LALR
parser on grammars written separately here, `json` + `jsonschema` for schemas.
"""

from __future__ import annotations

import json
import random
import re
import sys

import jsonschema
import pytest
from lark import Lark
from lark.exceptions import LarkError

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------- grammars the engine gets
ARITH_LARK = r"""
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: NUMBER | "(" expr ")"
NUMBER: /[0-9]{1,4}/
"""
ARITH_EBNF = r"""
root   ::= expr
expr   ::= term (("+" | "-") term)*
term   ::= factor (("*" | "/") factor)*
factor ::= number | "(" expr ")"
number ::= [0-9] | [0-9] [0-9] | [0-9] [0-9] [0-9]
"""
LISTS_LARK = r"""
start: list
list: "[" [value ("," value)*] "]"
value: list | NUMBER
NUMBER: /[0-9]{1,3}/
"""
LISTS_EBNF = r"""
root  ::= list
list  ::= "[" (value ("," value)*)? "]"
value ::= list | [0-9] [0-9]?
"""
SQL_LARK = r"""
start: "SELECT " columns " FROM " NAME where?
columns: "*" | NAME (", " NAME)*
where: " WHERE " condition ((" AND " | " OR ") condition)*
condition: NAME " " OP " " value
OP: "=" | "<" | ">" | "!="
value: NUMBER | "'" WORD "'"
NAME: /[a-z_]{1,12}/
WORD: /[A-Za-z ]{0,12}/
NUMBER: /[0-9]{1,5}/
"""

# ---------------------------------------------------------------- independent parsers (lark's LALR)
ARITH_CHECK = Lark(r"""
?sum: product | sum "+" product | sum "-" product
?product: atom | product "*" atom | product "/" atom
?atom: INT | "(" sum ")"
INT: /[0-9]+/
""", start="sum", parser="lalr")
SQL_CHECK = Lark(r"""
start: "SELECT" cols "FROM" NAME ("WHERE" cond (BOOL cond)*)?
cols: "*" | NAME ("," NAME)*
cond: NAME OP (INT | STRING)
BOOL: "AND" | "OR"
OP: "!=" | "=" | "<" | ">"
STRING: /'[A-Za-z ]*'/
NAME: /[a-z_]+/
%import common.INT
%ignore " "
""", parser="lalr")


def _parses_arith(text: str, max_digits: int) -> bool:
    try:
        ARITH_CHECK.parse(text)
    except LarkError:
        return False
    return " " not in text and all(len(n) <= max_digits for n in re.findall(r"[0-9]+", text))


def _parses_lists(text: str, max_digits: int) -> bool:
    """Nested lists of small integers, written compactly: json decides, then the shape is checked."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False

    def ok(v: object) -> bool:
        if isinstance(v, list):
            return all(ok(x) for x in v)
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10 ** max_digits

    return isinstance(value, list) and ok(value) and json.dumps(value, separators=(",", ":")) == text


def _parses_sql(text: str) -> bool:
    try:
        SQL_CHECK.parse(text)
    except LarkError:
        return False
    return True


def _prompt(engine, task: str) -> str:
    return engine.apply_chat_template([{"role": "user", "content": task}])


def _cases(num: int, seed: int) -> list[tuple[int, float]]:
    """(sampling seed, temperature) pairs, drawn at random (greedy included)."""
    rng = random.Random(seed)
    return [(rng.randrange(2**16), rng.choice([0.0, 0.6, 1.0, 1.3])) for _ in range(num)]


def _assert_complete_iff_valid(results: list[dict], is_valid) -> None:
    """Every output that ended on its own (EOS or the grammar's end) is valid; `is_complete` agrees with the
    independent parser for every output, also those the token limit ended."""
    for result in results:
        meta = result["meta_info"]
        valid = is_valid(result["text"])
        assert meta["constraint"]["kind"] == "grammar"
        assert meta["constraint"]["is_complete"] is valid, result["text"]
        if meta["finish_reason"]["type"] == "stop":
            assert valid, result["text"]


@pytest.mark.parametrize("field, grammar, task, is_valid", [
    ("lark", ARITH_LARK, "Write a long arithmetic expression with parentheses.", lambda t: _parses_arith(t, 4)),
    ("ebnf", ARITH_EBNF, "Write a long arithmetic expression with parentheses.", lambda t: _parses_arith(t, 3)),
    ("lark", LISTS_LARK, "Write a deeply nested list of numbers.", lambda t: _parses_lists(t, 3)),
    ("ebnf", LISTS_EBNF, "Write a deeply nested list of numbers.", lambda t: _parses_lists(t, 2)),
    ("lark", SQL_LARK, "Write a SQL query that finds young users in Paris.", _parses_sql),
], ids=["arith-lark", "arith-ebnf", "lists-lark", "lists-ebnf", "sql-lark"])
def test_sampled_outputs_parse_with_an_independent_parser(engine, field, grammar, task, is_valid):
    cases = _cases(6, seed=len(grammar))
    results = engine.generate([_prompt(engine, task)] * len(cases), [
        {field: grammar, "temperature": temperature, "sampling_seed": seed, "max_new_tokens": 48}
        for seed, temperature in cases])
    _assert_complete_iff_valid(results, is_valid)
    # the budget rule closes what the model leaves open: nearly every output ends complete
    assert sum(r["meta_info"]["constraint"]["is_complete"] for r in results) >= len(results) - 1
    engine.check_integrity()


def test_budget_rule_closes_open_grammars_within_the_token_limit(engine):
    prompt = _prompt(engine, "Write a very long and deeply nested list of numbers, like [[1,[2,[3,[4]]]],[5]].")
    budgets = [12, 17, 23, 30]
    results = engine.generate([prompt] * len(budgets), [
        {"lark": LISTS_LARK, "temperature": 1.0, "sampling_seed": 5 + budget, "max_new_tokens": budget}
        for budget in budgets])
    for budget, result in zip(budgets, results):
        meta = result["meta_info"]
        assert meta["completion_tokens"] <= budget
        assert _parses_lists(result["text"], 3), result["text"]
        assert meta["constraint"]["is_complete"] is True
    # the tight budgets needed steering: the closing search chose some tokens
    assert any(r["meta_info"]["constraint"]["num_steered"] > 0 for r in results)
    engine.check_integrity()


# ---------------------------------------------------------------- recursive JSON schemas
def _defs(root: str, **defs: dict) -> dict:
    return {"$defs": defs, "$ref": f"#/$defs/{root}"}


SHORT = {"type": "string", "maxLength": 10}
RECURSIVE_SCHEMAS = {
    "tree": _defs("node", node={"type": "object", "properties": {
        "name": SHORT, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3}},
        "required": ["name", "children"]}),
    "comment_thread": _defs("comment", comment={"type": "object", "properties": {
        "author": SHORT, "text": {"type": "string", "maxLength": 30},
        "replies": {"type": "array", "items": {"$ref": "#/$defs/comment"}}},
        "required": ["author", "text", "replies"]}),
    "nested_menu": _defs("item", item={"type": "object", "properties": {
        "label": SHORT, "submenu": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1}},
        "required": ["label"]}),
    "linked_list": _defs("node", node={"type": "object", "properties": {
        "value": {"type": "integer"}, "next": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/node"}]}},
        "required": ["value", "next"]}),
    "expression_ast": _defs("expr", expr={"anyOf": [
        {"type": "object", "properties": {"op": {"enum": ["+", "-", "*"]}, "left": {"$ref": "#/$defs/expr"},
                                          "right": {"$ref": "#/$defs/expr"}}, "required": ["op", "left", "right"]},
        {"type": "object", "properties": {"num": {"type": "integer"}}, "required": ["num"]}]}),
    "filesystem": _defs("entry", entry={"anyOf": [
        {"type": "object", "properties": {"file": SHORT}, "required": ["file"]},
        {"type": "object", "properties": {"dir": SHORT,
                                          "entries": {"type": "array", "items": {"$ref": "#/$defs/entry"}}},
         "required": ["dir", "entries"]}]}),
    "departments_and_teams": _defs(
        "department",
        department={"type": "object", "properties": {"name": SHORT, "teams": {"type": "array",
                                                                              "items": {"$ref": "#/$defs/team"}}},
                    "required": ["name", "teams"]},
        team={"type": "object", "properties": {"lead": SHORT, "departments": {
            "type": "array", "items": {"$ref": "#/$defs/department"}, "maxItems": 2}}, "required": ["lead"]}),
    "json_value": _defs("value", value={"anyOf": [
        {"type": "integer"}, SHORT, {"type": "array", "items": {"$ref": "#/$defs/value"}, "maxItems": 3}]}),
    "boolean_query": _defs("query", query={"anyOf": [
        {"type": "object", "properties": {"and": {"type": "array", "items": {"$ref": "#/$defs/query"}}},
         "required": ["and"]},
        {"type": "object", "properties": {"not": {"$ref": "#/$defs/query"}}, "required": ["not"]},
        {"type": "object", "properties": {"term": SHORT}, "required": ["term"]}]}),
    "taxonomy_via_root": {"type": "object", "properties": {
        "category": SHORT, "sub": {"type": "array", "items": {"$ref": "#"}}}, "required": ["category", "sub"]},
    "html_element": _defs("element", element={"type": "object", "properties": {
        "tag": {"enum": ["div", "p", "ul", "li"]},
        "children": {"type": "array", "items": {"anyOf": [SHORT, {"$ref": "#/$defs/element"}]}}},
        "required": ["tag", "children"]}),
}


def test_recursive_schemas_give_valid_json(engine):
    names = list(RECURSIVE_SCHEMAS)
    cases = _cases(len(names), seed=11)
    prompts = [_prompt(engine, f"Return a nested JSON value: a {name.replace('_', ' ')}.") for name in names]
    results = engine.generate(prompts, [
        {"json_schema": RECURSIVE_SCHEMAS[name], "temperature": temperature, "sampling_seed": seed,
         "max_new_tokens": 64} for name, (seed, temperature) in zip(names, cases)])
    for name, result in zip(names, results):
        meta = result["meta_info"]
        assert meta["constraint"]["kind"] == "grammar", name
        assert meta["constraint"]["is_complete"] is True, (name, result["text"])
        jsonschema.validate(json.loads(result["text"]), RECURSIVE_SCHEMAS[name])
    engine.check_integrity()


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def test_recursion_goes_deeper_than_the_old_unroll_limit(engine):
    """The FSM path unrolled `$ref` 5 times; the grammar path has no limit."""
    schema = RECURSIVE_SCHEMAS["json_value"]
    prompt = "".join("[" * 9 + str(n) + "]" * 9 + "\n" for n in (1, 2, 3))    # a pattern the model continues
    result = engine.generate(prompt, {"json_schema": schema, "temperature": 0, "max_new_tokens": 40})
    value = json.loads(result["text"])
    jsonschema.validate(value, schema)
    assert _depth(value) > 5
    engine.check_integrity()


# ---------------------------------------------------------------- mixed batches, jump-forward
def test_mixed_batch_of_free_regex_json_and_grammar_requests(engine):
    person = {"type": "object", "properties": {"name": SHORT, "age": {"type": "integer"}}, "required": ["name", "age"]}
    tree = RECURSIVE_SCHEMAS["tree"]
    params = [{"temperature": 0, "max_new_tokens": 8},
              {"regex": r"(yes|no), [a-z ]{1,20}\.", "temperature": 0.8, "sampling_seed": 3, "max_new_tokens": 30},
              {"json_schema": person, "temperature": 0.7, "sampling_seed": 4, "max_new_tokens": 40},
              {"lark": SQL_LARK, "temperature": 0.9, "sampling_seed": 5, "max_new_tokens": 40},
              {"ebnf": ARITH_EBNF, "temperature": 0, "max_new_tokens": 24},
              {"json_schema": tree, "temperature": 0.7, "sampling_seed": 6, "max_new_tokens": 60}]
    results = engine.generate([_prompt(engine, "Tell me about a person, a query and a sum.")] * len(params), params)
    free, regex, record, sql, arith, nested = results
    assert "constraint" not in free["meta_info"] and free["meta_info"]["completion_tokens"] >= 1
    assert re.fullmatch(params[1]["regex"], regex["text"])
    assert regex["meta_info"]["constraint"]["kind"] == record["meta_info"]["constraint"]["kind"] == "fsm"
    jsonschema.validate(json.loads(record["text"]), person)
    assert _parses_sql(sql["text"]) and _parses_arith(arith["text"], 3)
    jsonschema.validate(json.loads(nested["text"]), tree)
    assert nested["meta_info"]["constraint"]["kind"] == "grammar"
    engine.check_integrity()


KEYWORDS_LARK = r"""
start: "SELECT id, name, email FROM customers WHERE country = '" COUNTRY "' ORDER BY name ASC LIMIT " NUMBER ";"
COUNTRY: /[A-Z][a-z]{2,10}/
NUMBER: /[1-9][0-9]?/
"""


def test_jump_forward_appends_forced_keywords_and_saves_forward_passes(engine):
    prompt = _prompt(engine, "Write a SQL query for customers in France.")
    runs = {}
    for jump in (True, False):
        before = engine.stats()["num_forward_passes"]
        result = engine.generate(prompt, {"lark": KEYWORDS_LARK, "temperature": 0, "max_new_tokens": 60,
                                          "jump_forward": jump})
        runs[jump] = (result, engine.stats()["num_forward_passes"] - before)
    (jumped, jumped_passes), (plain, plain_passes) = runs[True], runs[False]
    assert jumped["text"] == plain["text"]                  # greedy: the same output either way
    assert re.fullmatch(r"SELECT id, name, email FROM customers WHERE country = '[A-Z][a-z]{2,10}' "
                        r"ORDER BY name ASC LIMIT [1-9][0-9]?;", jumped["text"])
    trace = jumped["meta_info"]["constraint_trace"]
    forced = [step for step in trace if step["forced"]]
    assert len(forced) >= 10 and all(step["num_allowed"] == 1 for step in forced)
    assert "".join(step["token"] for step in trace) == jumped["text"]
    assert not any(step["forced"] for step in plain["meta_info"]["constraint_trace"])
    assert jumped["meta_info"]["constraint"]["num_forced_tokens"] == len(forced)
    assert jumped_passes < plain_passes - 10
    assert jumped["meta_info"]["constraint"]["is_complete"] and plain["meta_info"]["constraint"]["is_complete"]
    engine.check_integrity()


def test_trace_states_are_short_grammar_positions(engine):
    result = engine.generate(_prompt(engine, "Add two numbers."), {"lark": ARITH_LARK, "temperature": 0,
                                                                   "max_new_tokens": 12})
    trace = result["meta_info"]["constraint_trace"]
    assert all(isinstance(step["state"], str) and len(step["state"]) <= 24 for step in trace)
    assert trace[0]["state"] == "▸"                               # nothing matched yet
    text = "".join(step["token"] for step in trace[:2])
    assert trace[2]["state"].startswith(text[-16:])               # the matched text, then the marker
    assert trace[-1]["state"].endswith("✓")                       # the grammar could end there
    engine.check_integrity()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("params, message", [
    ({"lark": 'start: ("a"'}, r"lark: invalid grammar: 1\(12\): Expected token '\)'"),
    ({"lark": 'start: "a" missing'}, r"lark: invalid grammar: .*unknown name: \"missing\""),
    ({"ebnf": 'root ::= "a" (b'}, r"ebnf: invalid grammar"),
    ({"lark": 'start: a\na: "x" a'}, r"lark: no output can satisfy this grammar: rule 'start' never finishes"),
    ({"ebnf": 'root ::= a\na ::= "(" a ")"'}, r"ebnf: no output can satisfy this grammar"),
    ({"json_schema": {"$defs": {"n": {"type": "object", "properties": {"c": {"$ref": "#/$defs/n"}},
                                      "required": ["c"]}}, "$ref": "#/$defs/n"}}, r"required recursion never ends"),
    ({"json_schema": {"type": "object", "properties": {"n": {"$ref": "#"}, "x": {"not": {}}}}}, r"not"),
    ({"json_schema": RECURSIVE_SCHEMAS["tree"], "json_whitespace": "pretty"}, r"pretty"),
    ({"lark": ARITH_LARK, "regex": "a+"}, r"regex and lark are mutually exclusive"),
    ({"ebnf": ARITH_EBNF, "json_schema": {"type": "integer"}}, r"json_schema and ebnf are mutually exclusive"),
    ({"lark": 5}, r"lark must be a Lark grammar string"),
])
def test_bad_grammars_fail_at_submission_and_engine_keeps_serving(engine, params, message):
    with pytest.raises(ValueError, match=message):
        engine.generate("Hello", {**params, "max_new_tokens": 4})
    assert engine.generate("Hello", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2
    engine.check_integrity()


def test_without_llguidance_grammars_are_a_clear_error_and_regex_still_works(engine, monkeypatch):
    for name in [m for m in sys.modules if m == "llguidance" or m.startswith("llguidance.")]:
        monkeypatch.setitem(sys.modules, name, None)        # `import llguidance` now raises ImportError
    with pytest.raises(ValueError, match=r"need the llguidance package: pip install llguidance"):
        engine.generate("Hello", {"lark": 'start: "a"', "max_new_tokens": 4})
    result = engine.generate("Hello", {"regex": "[0-9]{3}", "max_new_tokens": 6})
    assert re.fullmatch("[0-9]{3}", result["text"])
    engine.check_integrity()


def test_llguidance_tokenizer_is_built_once_per_tokenizer(engine):
    from sgnb.constrained import TokenVocab
    from sgnb.engine.grammar_constraint import tokenizer_entry

    vocab = TokenVocab.from_tokenizer(engine.tokenizer, eos_token_ids=engine.eos_ids)
    first = tokenizer_entry(engine.tokenizer, vocab, engine.model_config.vocab_size, engine.eos_ids)
    again = tokenizer_entry(engine.tokenizer, vocab, engine.model_config.vocab_size, engine.eos_ids)
    assert first is again and first.tokenizer.vocab_size == engine.model_config.vocab_size
    assert first.byte_tokens[ord("[")] == engine.tokenizer.convert_tokens_to_ids("[")
