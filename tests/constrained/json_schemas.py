"""The JSON Schema suite used by the tests and by bench/constrained_compile.py.

Between them the schemas use every supported keyword: type (each type and a list), properties,
required, additionalProperties (false, a schema), items, prefixItems, minItems, maxItems,
enum, const, anyOf, oneOf, allOf, $ref with $defs and definitions (also recursive), string
format (date, time, date-time, email, uuid, ipv4), pattern, minLength, maxLength, `{}`/true,
and pydantic models.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, Field

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}

SCALARS = {
    "type": "object",
    "properties": {
        "s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"},
        "b": {"type": "boolean"}, "z": {"type": "null"},
    },
    "required": ["s", "i", "n", "b", "z"],
}

NESTED = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["street", "city"],
        },
    },
    "required": ["id", "address"],
}

MIXED_OPTIONAL = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "integer"},
                   "d": {"type": "null"}},
    "required": ["b"],
}

ALL_OPTIONAL = {
    "type": "object",
    "properties": {"x": {"type": "integer"}, "y": {"type": "boolean"}, "z": {"type": "null"}},
    "additionalProperties": False,
}

CHARACTER = {  # the paper's key-heavy character extraction
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "house": {"enum": ["Gryffindor", "Slytherin", "Ravenclaw", "Hufflepuff"]},
        "blood status": {"enum": ["Pure-blood", "Half-blood", "Muggle-born"]},
        "occupation": {"enum": ["student", "teacher", "auror", "ministry of magic", "death eater", "order of the phoenix"]},
        "wand": {
            "type": "object",
            "properties": {"wood": {"type": "string", "maxLength": 8}, "core": {"type": "string", "maxLength": 8},
                           "length": {"type": "number"}},
            "required": ["wood", "core", "length"],
        },
        "alive": {"enum": ["Alive", "Deceased"]},
        "patronus": {"type": "string", "maxLength": 10},
        "bogart": {"type": "string", "maxLength": 10},
    },
    "required": ["name", "house", "blood status", "occupation", "wand", "alive", "patronus", "bogart"],
}

CITY = {  # the paper's city-information extraction
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "country": {"type": "string", "maxLength": 16},
        "latitude": {"type": "number"},
        "population": {"type": "integer"},
        "top 3 landmarks": {"type": "array", "items": {"type": "string", "maxLength": 16}, "minItems": 3,
                            "maxItems": 3},
    },
    "required": ["name", "country", "latitude", "population", "top 3 landmarks"],
}

STRING_LIST = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}
SHORT_INT_LIST = {"type": "array", "items": {"type": "integer"}, "maxItems": 2}
LONG_BOOL_LIST = {"type": "array", "items": {"type": "boolean"}, "minItems": 2}
OBJECT_LIST = {
    "type": "array",
    "items": {"type": "object", "properties": {"k": {"type": "string", "maxLength": 4}, "v": {"type": "number"}},
              "required": ["k", "v"]},
    "maxItems": 3,
}
MATRIX = {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "maxItems": 3}, "maxItems": 3}
TUPLE = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}, {"type": "boolean"}],
         "items": False}
ENUM_STRINGS = {"enum": ["red", "green", "blue", "dark \"red\"", "back\\slash"]}
ENUM_MIXED = {"enum": [1, "a", None, True, 2.5, [1, 2], {"k": "v"}]}
CONST_STRING = {"type": "object", "properties": {"version": {"const": "1.0"}, "n": {"type": "integer"}},
                "required": ["version", "n"]}
CONST_OBJECT = {"const": {"a": [1, 2], "b": None}}
ANY_OF = {"type": "object", "properties": {"v": {"anyOf": [{"type": "string", "maxLength": 5},
                                                            {"type": "integer"}, {"type": "null"}]}},
          "required": ["v"]}
ONE_OF = {
    "oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
         "required": ["kind", "r"]},
        {"type": "object", "properties": {"kind": {"const": "rect"}, "w": {"type": "integer"}, "h": {"type": "integer"}},
         "required": ["kind", "w", "h"]},
    ]
}
REF_DEFS = {
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                        "required": ["x", "y"]}},
    "type": "object",
    "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
    "required": ["start", "end"],
}
REF_DEFINITIONS = {
    "definitions": {"tag": {"type": "string", "pattern": "^[a-z]{1,6}$"}},
    "type": "array",
    "items": {"$ref": "#/definitions/tag"},
    "maxItems": 4,
}
RECURSIVE_TREE = {
    "$defs": {"node": {"type": "object",
                       "properties": {"value": {"type": "integer"},
                                      "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
                       "required": ["value"]}},
    "$ref": "#/$defs/node",
}
DATE = {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}, "required": ["d"]}
DATE_TIME = {"type": "string", "format": "date-time"}
TIME = {"type": "string", "format": "time"}
EMAIL = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}, "required": ["email"]}
UUID = {"type": "string", "format": "uuid"}
IPV4 = {"type": "string", "format": "ipv4"}
PATTERN = {"type": "object", "properties": {"code": {"type": "string", "pattern": r"^[A-Z]{2}-\d{3}$"}},
           "required": ["code"]}
PATTERN_ESCAPES = {"type": "string", "pattern": r'^[a"\\\n]{1,4}$'}
LENGTHS = {"type": "object", "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 5}},
           "required": ["s"]}
MIN_LENGTH = {"type": "string", "minLength": 3}
NULLABLE = {"type": "object", "properties": {"v": {"type": ["string", "null"], "maxLength": 3}}, "required": ["v"]}
ANY_VALUE = {"type": "object", "properties": {"payload": {}}, "required": ["payload"]}
FREE_OBJECT = {"type": "object"}
DICT_OF_INTS = {"type": "object", "additionalProperties": {"type": "integer"}}
ALL_OF = {"$defs": {"n": {"type": "integer"}}, "type": "object",
          "properties": {"n": {"allOf": [{"$ref": "#/$defs/n"}]}, "t": True}, "required": ["n", "t"]}
UNICODE = {"type": "object", "properties": {"名前": {"type": "string", "maxLength": 4},
                                            "ville": {"enum": ["Zürich", "東京", "São Paulo"]}},
           "required": ["名前", "ville"]}


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str = Field(max_length=20)
    number: int


class Customer(BaseModel):
    name: str
    tier: Literal["free", "pro"]
    color: Color
    address: Address
    tags: list[str] = Field(default_factory=list, max_length=2)
    nickname: str | None = None
    score: float = 0.0


SCHEMAS: dict[str, object] = {
    "person": PERSON, "scalars": SCALARS, "nested": NESTED, "mixed_optional": MIXED_OPTIONAL,
    "all_optional": ALL_OPTIONAL, "character": CHARACTER, "city": CITY, "string_list": STRING_LIST,
    "short_int_list": SHORT_INT_LIST, "long_bool_list": LONG_BOOL_LIST, "object_list": OBJECT_LIST,
    "matrix": MATRIX, "tuple": TUPLE, "enum_strings": ENUM_STRINGS, "enum_mixed": ENUM_MIXED,
    "const_string": CONST_STRING, "const_object": CONST_OBJECT, "any_of": ANY_OF, "one_of": ONE_OF,
    "ref_defs": REF_DEFS, "ref_definitions": REF_DEFINITIONS, "recursive_tree": RECURSIVE_TREE, "date": DATE,
    "date_time": DATE_TIME, "time": TIME, "email": EMAIL, "uuid": UUID, "ipv4": IPV4, "pattern": PATTERN,
    "pattern_escapes": PATTERN_ESCAPES, "lengths": LENGTHS, "min_length": MIN_LENGTH, "nullable": NULLABLE,
    "any_value": ANY_VALUE, "free_object": FREE_OBJECT, "dict_of_ints": DICT_OF_INTS, "all_of": ALL_OF,
    "unicode": UNICODE, "pydantic_customer": Customer,
}
