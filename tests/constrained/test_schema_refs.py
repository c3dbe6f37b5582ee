"""Local $refs of JSON schemas: resolution, recursion, and whether some finite value matches."""

from __future__ import annotations

import pytest

from sgnb.constrained import ConstraintError
from sgnb.constrained.schema_refs import can_finish, is_recursive, resolve_ref

TREE = {"$defs": {"node": {"type": "object", "properties": {
    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["children"]}},
    "$ref": "#/$defs/node"}
MUTUAL = {"$defs": {"a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}},
                    "b": {"type": "array", "items": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}
SHARED_NOT_RECURSIVE = {"$defs": {"p": {"type": "integer"}}, "type": "object",
                        "properties": {"x": {"$ref": "#/$defs/p"}, "y": {"$ref": "#/$defs/p"}}}
SELF_ROOT = {"type": "object", "properties": {"next": {"$ref": "#"}}}


@pytest.mark.parametrize("schema, expected", [
    (TREE, True), (MUTUAL, True), (SELF_ROOT, True), (SHARED_NOT_RECURSIVE, False),
    ({"type": "string"}, False), ({"anyOf": [{"type": "null"}, {"$ref": "#"}]}, True),
])
def test_recursion_is_found_through_any_chain_of_refs(schema, expected):
    assert is_recursive(schema) is expected


@pytest.mark.parametrize("schema, expected", [
    (TREE, True),                                   # an empty children array ends it
    (MUTUAL, True),
    ({"type": "object", "properties": {"n": {"$ref": "#"}}, "required": ["n"]}, False),
    ({"type": "array", "items": {"$ref": "#"}, "minItems": 1}, False),
    ({"type": "array", "items": {"$ref": "#"}}, True),
    ({"anyOf": [{"$ref": "#/$defs/loop"}, {"type": "integer"}],
      "$defs": {"loop": {"type": "object", "properties": {"x": {"$ref": "#/$defs/loop"}}, "required": ["x"]}}}, True),
    ({"$defs": {"a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}, "required": ["b"]},
                "b": {"type": "array", "prefixItems": [{"$ref": "#/$defs/a"}], "minItems": 1}},
      "$ref": "#/$defs/a"}, False),
    ({"enum": []}, False),
])
def test_can_finish_only_when_some_finite_value_matches(schema, expected):
    assert can_finish(schema) is expected


def test_resolve_ref_follows_json_pointers_and_names_bad_ones():
    schema = {"$defs": {"a/b": {"type": "integer"}, "list": [{"type": "null"}]}}
    assert resolve_ref(schema, "#/$defs/a~1b", "#") == {"type": "integer"}
    assert resolve_ref(schema, "#/$defs/list/0", "#") == {"type": "null"}
    with pytest.raises(ConstraintError, match="'#/\\$defs/missing' at #/x does not resolve"):
        resolve_ref(schema, "#/$defs/missing", "#/x")
    with pytest.raises(ConstraintError, match="only local"):
        resolve_ref(schema, "http://example.com/s.json", "#")
