"""JSON Schema -> regex -> token FSM: random walks produce JSON the `jsonschema` package accepts."""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest

from sgnb.constrained import ConstraintError, compile_regex, schema_to_regex
from tests.constrained.json_schemas import SCHEMAS, Customer
from tests.constrained.regex_strategies import check_walk, distances_to_accept, walk_fsm

VALIDATOR_CLASS = jsonschema.Draft202012Validator


def _schema_dict(schema: object) -> dict:
    return schema.model_json_schema() if isinstance(schema, type) else schema  # type: ignore[union-attr]


def _validate(text: str, schema: object) -> object:
    value = json.loads(text)
    VALIDATOR_CLASS(_schema_dict(schema), format_checker=VALIDATOR_CLASS.FORMAT_CHECKER).validate(value)
    return value


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize("whitespace", ["compact", "flexible", "pretty"])
def test_random_walks_produce_valid_json(name, whitespace, vocab):
    schema = SCHEMAS[name]
    pattern = schema_to_regex(schema, whitespace=whitespace, max_recursion_depth=3)
    fsm = compile_regex(pattern, vocab)
    dist = distances_to_accept(fsm)
    for seed in range(4):
        walk = walk_fsm(fsm, vocab, random.Random(seed), free_steps=[0, 5, 15, 40][seed], dist=dist)
        text = check_walk(pattern, vocab, walk)
        _validate(text, schema)
        if schema is Customer:
            Customer.model_validate_json(text)


def test_custom_whitespace_regex_allows_pretty_printing(vocab):
    schema = SCHEMAS["nested"]
    pattern = schema_to_regex(schema, whitespace=r"[ \n]{0,3}")
    pretty = json.dumps({"id": 1, "address": {"street": "a", "city": "b"}}, indent=1)
    assert re.fullmatch(pattern, pretty)
    fsm = compile_regex(pattern, vocab)
    for seed in range(3):
        _validate(check_walk(pattern, vocab, walk_fsm(fsm, vocab, random.Random(seed), free_steps=10)), schema)


@pytest.mark.parametrize(
    "value, schema",
    [
        ({"name": "Ann", "age": 3}, SCHEMAS["person"]),
        ({"b": True}, SCHEMAS["mixed_optional"]),
        ({"a": 1, "b": False, "d": None}, SCHEMAS["mixed_optional"]),
        ({}, SCHEMAS["all_optional"]),
        ({"y": True, "z": None}, SCHEMAS["all_optional"]),
        ([1, "x", True], SCHEMAS["tuple"]),
        ({"kind": "rect", "w": 2, "h": 3}, SCHEMAS["one_of"]),
        ({"value": 1, "children": [{"value": 2, "children": []}]}, SCHEMAS["recursive_tree"]),
        ({"d": "2024-02-29"}, SCHEMAS["date"]),
        ("1999-12-31T23:59:60Z".replace("60", "59"), SCHEMAS["date_time"]),
        ({"payload": {"a": [1, "b", None]}}, SCHEMAS["any_value"]),
        ({"x": 1, "y": -2}, SCHEMAS["dict_of_ints"]),
        ({"名前": "太郎", "ville": "東京"}, SCHEMAS["unicode"]),
        ({"code": "AB-123"}, SCHEMAS["pattern"]),
        ('a"\\\n', SCHEMAS["pattern_escapes"]),
    ],
)
def test_known_valid_documents_match(value, schema):
    for whitespace, dump in (("compact", dict(separators=(",", ":"))), ("flexible", {})):
        text = json.dumps(value, ensure_ascii=False, **dump)
        assert re.fullmatch(schema_to_regex(schema, whitespace=whitespace), text), (whitespace, text)


@pytest.mark.parametrize(
    "value, schema",
    [
        ({"age": 3, "name": "Ann"}, SCHEMAS["person"]),  # keys come in the listed order
        ({"name": "Ann"}, SCHEMAS["person"]),  # missing required
        ({"name": "Ann", "age": 3, "x": 1}, SCHEMAS["person"]),  # no additional keys
        ({"d": "2023-02-29"}, SCHEMAS["date"]),  # not a leap year
        ({"d": "2023-04-31"}, SCHEMAS["date"]),
        ({"code": "ab-123"}, SCHEMAS["pattern"]),
        ({"s": "a"}, SCHEMAS["lengths"]),
        ({"s": "abcdef"}, SCHEMAS["lengths"]),
        ([], SCHEMAS["string_list"]),
        (["a", "b", "c", "d"], SCHEMAS["string_list"]),
        ([1, "x"], SCHEMAS["tuple"]),
        ({"kind": "circle", "w": 1, "h": 2}, SCHEMAS["one_of"]),
        ("300.1.1.1", SCHEMAS["ipv4"]),
    ],
)
def test_invalid_documents_do_not_match(value, schema):
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert not re.fullmatch(schema_to_regex(schema), text)


def test_compact_forced_bytes_are_the_keys(vocab):
    fsm = compile_regex(schema_to_regex(SCHEMAS["person"]), vocab)
    forced, state = fsm.forced_bytes(fsm.initial_state)
    assert forced == b'{"name":"'
    state = fsm.advance_bytes(state, b'Ann"')
    assert fsm.forced_bytes(state)[0] == b',"age":'
    state = fsm.advance_bytes(state, b',"age":7')
    assert fsm.forced_bytes(state) == (b"", state)  # more digits or '}'
    assert fsm.forced_bytes(fsm.advance_bytes(state, b"}")) == (b"", fsm.advance_bytes(state, b"}"))


def _pretty(value: object, depth: int = 0) -> str:
    """The "pretty" layout, written independently: objects one member a line, 4 spaces a level; arrays inline."""
    if isinstance(value, dict) and value:
        inner = "    " * (depth + 1)
        members = ",\n".join(f"{inner}{json.dumps(k, ensure_ascii=False)}: {_pretty(v, depth + 1)}"
                              for k, v in value.items())
        return "{\n" + members + "\n" + "    " * depth + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_pretty(v, depth) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize("value, schema", [
    ({"name": "Ann", "age": 3}, SCHEMAS["person"]),
    ({"id": 1, "address": {"street": "a", "city": "b"}}, SCHEMAS["nested"]),
    ({"value": 1, "children": [{"value": 2, "children": []}]}, SCHEMAS["recursive_tree"]),
    ({"b": True}, SCHEMAS["mixed_optional"]),
    ({}, SCHEMAS["all_optional"]),
    ({"name": "Oslo", "country": "Norway", "latitude": 59.9, "population": 709037,
      "top 3 landmarks": ["Opera House", "Fort", "Zoo"]}, SCHEMAS["city"]),
])
def test_pretty_layout_indents_objects_by_depth_and_keeps_arrays_inline(value, schema):
    pattern = schema_to_regex(schema, whitespace="pretty")
    assert re.fullmatch(pattern, _pretty(value)), _pretty(value)
    assert not re.fullmatch(pattern, json.dumps(value, separators=(",", ":"))) or not value


def test_pretty_forced_bytes_carry_the_newlines_and_indentation(vocab):
    fsm = compile_regex(schema_to_regex(SCHEMAS["nested"], whitespace="pretty"), vocab)
    assert fsm.forced_bytes(fsm.initial_state)[0] == b'{\n    "id": '
    state = fsm.advance_bytes(fsm.initial_state, b'{\n    "id": 7')
    state = fsm.advance_bytes(state, b",")
    assert fsm.forced_bytes(state)[0] == b'\n    "address": {\n        "street": "'


def test_flexible_whitespace_breaks_forced_runs(vocab):
    fsm = compile_regex(schema_to_regex(SCHEMAS["person"], whitespace="flexible"), vocab)
    assert fsm.forced_bytes(fsm.initial_state)[0] == b'{"name":'


def test_forced_bytes_cover_enum_prefixes_and_nested_keys(vocab):
    fsm = compile_regex(schema_to_regex(SCHEMAS["character"]), vocab)
    state = fsm.advance_bytes(fsm.initial_state, b'{"name":"Harry"')
    assert fsm.forced_bytes(state)[0] == b',"house":"'
    state = fsm.advance_bytes(state, b',"house":"Gryffindor","blood status":"')
    assert fsm.forced_bytes(state)[0] == b""  # Pure-blood / Half-blood / Muggle-born
    state = fsm.advance_bytes(state, b"M")
    assert fsm.forced_bytes(state)[0] == b'uggle-born","occupation":"'
    state = fsm.advance_bytes(state, b'uggle-born","occupation":"auror"')
    assert fsm.forced_bytes(state)[0] == b',"wand":{"wood":"'


@pytest.mark.parametrize(
    "schema, keyword, path",
    [
        ({"type": "integer", "minimum": 0}, "minimum", "#"),
        ({"type": "object", "properties": {"age": {"type": "integer", "maximum": 9}}}, "maximum", "#/properties/age"),
        ({"type": "number", "exclusiveMinimum": 0}, "exclusiveMinimum", "#"),
        ({"type": "integer", "multipleOf": 2}, "multipleOf", "#"),
        ({"not": {"type": "string"}}, "not", "#"),
        ({"if": {"type": "string"}, "then": {"maxLength": 2}}, "if", "#"),
        ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties", "#"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems", "#"),
        ({"type": "array", "contains": {"type": "string"}}, "contains", "#"),
        ({"type": "object", "minProperties": 1}, "minProperties", "#"),
        ({"type": "object", "propertyNames": {"maxLength": 3}}, "propertyNames", "#"),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired", "#"),
        ({"type": "string", "nullable": True}, "nullable", "#"),
        ({"$defs": {"x": {"type": "integer", "minimum": 1}},
          "type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}}, "minimum", "#/$defs/x"),
        ({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer", "maximum": 3}]}},
         "maximum", "#/items/anyOf/1"),
    ],
)
def test_unsupported_keywords_name_keyword_and_path(schema, keyword, path):
    with pytest.raises(ConstraintError) as info:
        schema_to_regex(schema)
    assert f"unsupported JSON Schema keyword {keyword!r} at {path}" in str(info.value)


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"type": "string", "format": "uri"}, "unsupported string format 'uri' at #/format"),
        ({"type": "object", "properties": {"a": {}}, "additionalProperties": True},
         "'additionalProperties' other than false"),
        ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "'allOf' with more than one subschema"),
        ({"$ref": "other.json#/x"}, "only local '$ref'"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required property 'b'"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "maxLength 2 < minLength 5"),
        ({"type": "array", "minItems": -1}, "'minItems' at # must be a non-negative integer"),
        ({"type": "decimal"}, "unknown JSON Schema type 'decimal' at #/type"),
        ({"type": "integer", "maxLength": 3}, "keyword 'maxLength' does not apply to type"),
        ({"type": "string", "pattern": "(a"}, "invalid regex '(a'"),
        ({"type": "string", "pattern": "a(?=b)"}, "lookahead/lookbehind"),
        ({"anyOf": [{"type": "string"}], "type": "string"}, "'anyOf' combined with 'type'"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "'oneOf' branches 0 and 1 at # overlap"),
        ({"enum": []}, "must be a non-empty list"),
        ({"enum": ["a", 1], "type": "boolean"}, "no 'enum' value at # has type 'boolean'"),
        ({"type": "object", "properties": {"a": False}, "required": ["a"]}, "is false"),
        ("{not json", "not valid JSON"),
        (42, "must be a dict"),
    ],
)
def test_bad_schemas_are_clear_errors(schema, message):
    with pytest.raises(ConstraintError, match=re.escape(message)):
        schema_to_regex(schema)


def test_required_recursion_past_the_limit_is_an_error():
    schema = {"$defs": {"a": {"type": "object", "properties": {"next": {"$ref": "#/$defs/a"}}, "required": ["next"]}},
              "$ref": "#/$defs/a"}
    with pytest.raises(ConstraintError) as info:
        schema_to_regex(schema, max_recursion_depth=4)
    message = str(info.value)
    assert "recursive '$ref' '#/$defs/a' exceeds max_recursion_depth=4" in message
    assert "#/$defs/a/properties/next" in message


def test_optional_recursion_is_cut_at_the_limit(vocab):
    tree = SCHEMAS["recursive_tree"]
    deep = {"value": 0, "children": []}
    for depth in range(1, 6):
        deep = {"value": depth, "children": [deep]}
    text = json.dumps(deep, separators=(",", ":"))
    assert re.fullmatch(schema_to_regex(tree, max_recursion_depth=6), text)
    assert not re.fullmatch(schema_to_regex(tree, max_recursion_depth=2), text)
    with pytest.raises(ConstraintError, match="max_recursion_depth must be a positive integer"):
        schema_to_regex(tree, max_recursion_depth=0)


def test_pydantic_models_and_their_json_schema_agree():
    assert schema_to_regex(Customer) == schema_to_regex(Customer.model_json_schema())
    assert schema_to_regex(json.dumps(SCHEMAS["person"])) == schema_to_regex(SCHEMAS["person"])


def test_bad_whitespace_policy_is_rejected():
    with pytest.raises(ConstraintError, match="invalid regex"):
        schema_to_regex(SCHEMAS["person"], whitespace="[ ")
    with pytest.raises(ConstraintError, match="whitespace must be"):
        schema_to_regex(SCHEMAS["person"], whitespace="")
