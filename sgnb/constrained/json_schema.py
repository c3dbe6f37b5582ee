"""JSON Schema -> regex, for the subset structured generation uses.

Supported: type (string, integer, number, boolean, null, object, array, or a list of them),
properties / required / additionalProperties (false or absent: only the listed keys, in the
listed order; a schema without properties may give additionalProperties a schema: a
string-keyed map), items / prefixItems / minItems / maxItems, enum, const, anyOf, oneOf
(branches must not overlap), allOf with one subschema, local $ref into $defs / definitions
(or any local JSON pointer), string minLength / maxLength / pattern / format (date, time,
date-time, email, uuid, ipv4), and pydantic model classes. `{}` or `true` means any JSON
value, nested at most ANY_VALUE_DEPTH deep. Annotations (title, description, default,
examples, ...) are ignored; every other keyword is a ConstraintError naming the keyword and
its path, never silently ignored.

Whitespace: "compact" (none: the longest forced runs for jump-forward), "flexible" (an
optional space after ':' and ','; what json.dumps writes), or a regex inserted at every
structural position (inside brackets and around ':' and ',').

Recursive $ref is unrolled at most max_recursion_depth times; past that, optional places
(an optional property, an array that may be empty, an anyOf branch) drop the recursive
alternative, and a required recursion is a ConstraintError. (The engine sends recursive schemas
to its grammar path instead, with no depth limit: `sgnb.constrained.schema_refs.is_recursive`.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.json_regex import BOOLEAN, FORMATS, INTEGER, NULL, NUMBER, STRING, STRING_CHAR
from sgnb.constrained.regex_parse import parse_regex
from sgnb.constrained.regex_text import escape_literal, json_string_body
from sgnb.constrained.schema_refs import resolve_ref

ANY_VALUE_DEPTH = 2  # how deep `{}` / `true` (any JSON value) may nest arrays and objects

ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "contentMediaType", "contentEncoding", "discriminator", "$defs", "definitions",
})
_GENERIC = frozenset({"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"})
_BY_TYPE = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems"}),
    "integer": frozenset(), "number": frozenset(), "boolean": frozenset(), "null": frozenset(),
}
_SUPPORTED = _GENERIC | frozenset().union(*_BY_TYPE.values())


@dataclass(frozen=True, slots=True)
class _Layout:
    """Whitespace regexes at structural positions."""

    open: str  # after '{' / '['
    close: str  # before '}' / ']'
    comma: str  # the whole member separator, ',' included
    colon: str  # the whole key/value separator, ':' included
    indent: str | None = None  # "pretty": each object member on its own line, indented by nesting depth

    @classmethod
    def of(cls, whitespace: str) -> _Layout:
        if whitespace == "compact":
            return cls("", "", ",", ":")
        if whitespace == "flexible":
            return cls("", "", ",[ ]?", ":[ ]?")
        if whitespace == "pretty":  # the SGLang paper's layout: objects like json.dumps(indent=4), arrays inline
            return cls("", "", ", ", ": ", indent="    ")
        if not isinstance(whitespace, str) or not whitespace:
            raise ConstraintError(f"whitespace must be 'compact', 'flexible', 'pretty' or a regex, got {whitespace!r}")
        parse_regex(whitespace)  # a bad regex is reported here, naming it
        ws = f"(?:{whitespace})"
        return cls(ws, ws, f"{ws},{ws}", f"{ws}:{ws}")

    def object_open(self, depth: int) -> str:
        """After the '{' of an object nested `depth` objects deep (the root object is depth 0)."""
        return self.open if self.indent is None else r"\n" + self.indent * (depth + 1)

    def object_comma(self, depth: int) -> str:
        return self.comma if self.indent is None else r",\n" + self.indent * (depth + 1)

    def object_close(self, depth: int) -> str:
        return self.close if self.indent is None else r"\n" + self.indent * depth

    @property
    def empty_object(self) -> str:
        """An object with no members (pretty's line breaks come only with members: its `open` is empty)."""
        return rf"\{{{self.open}\}}"


class _Prune(Exception):
    """Internal: this subschema cannot be produced here (recursion limit or `false`);
    optional places drop it, required ones turn it into a ConstraintError."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise ConstraintError(f"value {value!r} is not JSON")


def _pointer_part(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _alternation(options: list[str]) -> str:
    return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"


class _Converter:
    def __init__(self, root: object, layout: _Layout, max_recursion_depth: int) -> None:
        self.root = root
        self.layout = layout
        self.max_depth = max_recursion_depth
        self.ref_stack: list[str] = []
        self.object_depth = 0  # objects (with properties) around the value being converted: the indentation

    # --- dispatch -------------------------------------------------------------------------
    def convert(self, schema: object, path: str) -> str:
        if schema is True:
            return self.any_value(ANY_VALUE_DEPTH)
        if schema is False:
            raise _Prune(f"the schema at {path} is false (no value matches it)")
        if not isinstance(schema, Mapping):
            raise ConstraintError(f"the schema at {path} must be an object or a boolean, got {type(schema).__name__}")
        keywords = set(schema) - ANNOTATIONS
        unsupported = sorted(k for k in keywords if k not in _SUPPORTED)
        if unsupported:
            raise ConstraintError(f"unsupported JSON Schema keyword {unsupported[0]!r} at {path}")
        if "$ref" in keywords:
            self._alone("$ref", keywords, path)
            return self.ref(schema["$ref"], path)
        if "allOf" in keywords:
            self._alone("allOf", keywords, path)
            branches = schema["allOf"]
            if not isinstance(branches, list) or len(branches) != 1:
                raise ConstraintError(f"'allOf' with more than one subschema is not supported (at {path})")
            return self.convert(branches[0], f"{path}/allOf/0")
        for combinator in ("anyOf", "oneOf"):
            if combinator in keywords:
                self._alone(combinator, keywords, path)
                return self.union(schema[combinator], combinator, path)
        if "enum" in keywords or "const" in keywords:
            return self.enum(schema, keywords, path)
        types = schema.get("type")
        if types is None:
            groups = [t for t in ("string", "object", "array") if keywords & _BY_TYPE[t]]
            if len(groups) > 1:
                raise ConstraintError(f"keywords of several types without 'type' at {path}: {sorted(keywords)}")
            if not groups:
                return self.any_value(ANY_VALUE_DEPTH)
            types = groups
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise ConstraintError(f"'type' at {path} must be a type name or a list of them, got {types!r}")
        for name in types:
            if name not in _BY_TYPE:
                raise ConstraintError(f"unknown JSON Schema type {name!r} at {path}/type")
        for keyword in sorted(keywords - _GENERIC):
            if not any(keyword in _BY_TYPE[t] for t in types):
                raise ConstraintError(f"keyword {keyword!r} does not apply to type {types!r} at {path}")
        options = []
        for name in dict.fromkeys(types):
            options.append(getattr(self, f"type_{name}")(schema, path))
        return _alternation(options)

    def _alone(self, keyword: str, keywords: set, path: str) -> None:
        others = sorted(keywords - {keyword})
        if others:
            raise ConstraintError(f"'{keyword}' combined with {others[0]!r} is not supported (at {path})")

    # --- combinators ---------------------------------------------------------------------
    def ref(self, ref: object, path: str) -> str:
        target = resolve_ref(self.root, ref, path)
        if self.ref_stack.count(ref) >= self.max_depth:
            raise _Prune(f"recursive '$ref' {ref!r} exceeds max_recursion_depth={self.max_depth} at {path}")
        self.ref_stack.append(ref)
        try:
            return self.convert(target, ref)
        finally:
            self.ref_stack.pop()

    def union(self, branches: object, combinator: str, path: str) -> str:
        if not isinstance(branches, list) or not branches:
            raise ConstraintError(f"'{combinator}' at {path} must be a non-empty list of schemas")
        options, kept, pruned = [], [], None
        for i, branch in enumerate(branches):
            try:
                options.append(self.convert(branch, f"{path}/{combinator}/{i}"))
                kept.append(i)
            except _Prune as exc:
                pruned = exc
        if not options:
            raise pruned  # type: ignore[misc]
        if combinator == "oneOf":
            self._check_disjoint(options, kept, path)
        return _alternation(options)

    def _check_disjoint(self, options: list[str], indices: list[int], path: str) -> None:
        from sgnb.constrained.regex_dfa import dfas_intersect, regex_to_byte_dfa

        dfas = [regex_to_byte_dfa(option) for option in options]
        for a in range(len(dfas)):
            for b in range(a + 1, len(dfas)):
                if dfas_intersect(dfas[a], dfas[b]):
                    raise ConstraintError(
                        f"'oneOf' branches {indices[a]} and {indices[b]} at {path} overlap (some value matches "
                        "both, which oneOf forbids); make them disjoint or use 'anyOf'"
                    )

    def enum(self, schema: Mapping, keywords: set, path: str) -> str:
        if "enum" in keywords and "const" in keywords:
            raise ConstraintError(f"'enum' combined with 'const' is not supported (at {path})")
        keyword = "enum" if "enum" in keywords else "const"
        others = sorted(keywords - {keyword, "type"})
        if others:
            raise ConstraintError(f"'{keyword}' combined with {others[0]!r} is not supported (at {path})")
        values = schema["enum"] if keyword == "enum" else [schema["const"]]
        if not isinstance(values, list) or not values:
            raise ConstraintError(f"'enum' at {path} must be a non-empty list")
        types = schema.get("type")
        if types is not None:
            allowed = {types} if isinstance(types, str) else set(types)
            if "number" in allowed:
                allowed.add("integer")
            values = [v for v in values if _json_type(v) in allowed]
            if not values:
                raise ConstraintError(f"no '{keyword}' value at {path} has type {types!r}")
        options = []
        for value in values:
            try:
                text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ConstraintError(f"'{keyword}' value {value!r} at {path} is not JSON: {exc}") from None
            options.append(escape_literal(text))
        return _alternation(list(dict.fromkeys(options)))

    # --- types ---------------------------------------------------------------------------
    def type_null(self, schema: Mapping, path: str) -> str:
        return NULL

    def type_boolean(self, schema: Mapping, path: str) -> str:
        return BOOLEAN

    def type_integer(self, schema: Mapping, path: str) -> str:
        return INTEGER

    def type_number(self, schema: Mapping, path: str) -> str:
        return NUMBER

    def type_string(self, schema: Mapping, path: str) -> str:
        present = [k for k in ("format", "pattern", "minLength", "maxLength") if k in schema]
        if "format" in schema:
            if len(present) > 1:
                raise ConstraintError(f"'format' combined with {present[1]!r} is not supported (at {path})")
            fmt = schema["format"]
            if fmt not in FORMATS:
                raise ConstraintError(f"unsupported string format {fmt!r} at {path}/format "
                                      f"(supported: {', '.join(sorted(FORMATS))})")
            return f'"{FORMATS[fmt]}"'
        if "pattern" in schema:
            if len(present) > 1:
                raise ConstraintError(f"'pattern' combined with {present[1]!r} is not supported (at {path})")
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise ConstraintError(f"'pattern' at {path} must be a string")
            try:
                return f'"{json_string_body(pattern)}"'
            except ConstraintError as exc:
                raise ConstraintError(f"{exc} (at {path}/pattern)") from None
        low = self._count(schema, "minLength", path, 0)
        high = self._count(schema, "maxLength", path, None)
        if high is not None and high < low:
            raise ConstraintError(f"maxLength {high} < minLength {low} at {path}")
        if low == 0 and high is None:
            return STRING
        return f'"{STRING_CHAR}{{{low},{"" if high is None else high}}}"'

    def type_object(self, schema: Mapping, path: str) -> str:
        self.object_depth += 1
        try:
            return self._object(schema, path, self.object_depth - 1)
        finally:
            self.object_depth -= 1

    def _object(self, schema: Mapping, path: str, depth: int) -> str:
        """An object `depth` objects deep; its members are converted one level deeper."""
        layout = self.layout
        open_, comma, close = layout.object_open(depth), layout.object_comma(depth), layout.object_close(depth)
        properties = schema.get("properties")
        required = schema.get("required", [])
        additional = schema.get("additionalProperties")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ConstraintError(f"'required' at {path} must be a list of strings")
        if len(set(required)) != len(required):
            raise ConstraintError(f"'required' at {path} lists a property twice")
        if properties is None:
            if required:
                raise ConstraintError(f"'required' without 'properties' is not supported (at {path})")
            if additional is False:
                return layout.empty_object
            if additional is None or additional is True:
                value = self.any_value(ANY_VALUE_DEPTH - 1)
            else:
                value = self.convert(additional, f"{path}/additionalProperties")
            member = f"{STRING}{layout.colon}{value}"
            return rf"(?:\{{{open_}{member}(?:{comma}{member})*{close}\}}|{layout.empty_object})"
        if not isinstance(properties, Mapping):
            raise ConstraintError(f"'properties' at {path} must be an object")
        if additional not in (None, False):
            raise ConstraintError(f"'additionalProperties' other than false together with 'properties' "
                                  f"is not supported (at {path}/additionalProperties)")
        missing = [r for r in required if r not in properties]
        if missing:
            raise ConstraintError(f"required property {missing[0]!r} at {path} is not in 'properties'")
        members: list[tuple[str, bool]] = []
        for name, subschema in properties.items():
            is_required = name in required
            sub_path = f"{path}/properties/{_pointer_part(name)}"
            try:
                value = self.convert(subschema, sub_path)
            except _Prune:
                if is_required:
                    raise
                continue
            key = escape_literal(json.dumps(name, ensure_ascii=False))
            members.append((f"{key}{layout.colon}{value}", is_required))
        if not members:
            return layout.empty_object
        body = rf"\{{{open_}{_ordered_members(members, comma)}{close}\}}"
        if any(is_required for _, is_required in members):
            return body
        return f"(?:{body}|{layout.empty_object})"      # every member optional: the object may be empty

    def type_array(self, schema: Mapping, path: str) -> str:
        layout = self.layout
        low = self._count(schema, "minItems", path, 0)
        high = self._count(schema, "maxItems", path, None)
        if high is not None and high < low:
            raise ConstraintError(f"maxItems {high} < minItems {low} at {path}")
        empty = rf"\[{layout.open}\]"
        if "prefixItems" in schema:
            prefix = schema["prefixItems"]
            if not isinstance(prefix, list) or not prefix:
                raise ConstraintError(f"'prefixItems' at {path} must be a non-empty list")
            if schema.get("items", False) is not False:
                raise ConstraintError(f"'items' together with 'prefixItems' is not supported (at {path}/items)")
            count = len(prefix)
            low = low if "minItems" in schema else count
            high = count if high is None else min(high, count)
            if low > high:
                raise ConstraintError(f"minItems {low} exceeds the {high} items prefixItems allows at {path}")
            items = [self.convert(item, f"{path}/prefixItems/{i}") for i, item in enumerate(prefix[:high])]
            tail = ""
            for i in range(high - 1, low - 1, -1):  # optional items nest from the end
                tail = f"(?:{layout.comma if i else ''}{items[i]}{tail})?"
            head = "".join(f"{layout.comma if i else ''}{items[i]}" for i in range(low))
            return rf"\[{layout.open}{head}{tail}{layout.close}\]" if high else empty
        item_schema = schema.get("items", True)
        if item_schema is False or high == 0:
            if low > 0:
                raise ConstraintError(f"minItems {low} at {path} but no item is allowed")
            return empty
        try:
            item = (self.any_value(ANY_VALUE_DEPTH - 1) if item_schema is True
                    else self.convert(item_schema, f"{path}/items"))
        except _Prune:
            if low > 0:
                raise
            return empty
        if low == 0:
            more = "*" if high is None else f"{{0,{high - 1}}}"
            return rf"\[{layout.open}(?:{item}(?:{layout.comma}{item}){more})?{layout.close}\]"
        more = f"{{{low - 1},}}" if high is None else f"{{{low - 1},{high - 1}}}"
        return rf"\[{layout.open}{item}(?:{layout.comma}{item}){more}{layout.close}\]"

    # --- helpers -------------------------------------------------------------------------
    def any_value(self, depth: int) -> str:
        layout = self.layout
        options = [STRING, NUMBER, BOOLEAN, NULL]
        if depth > 0:
            inner = self.any_value(depth - 1)
            member = f"{STRING}{layout.colon}{inner}"
            options.append(rf"\[{layout.open}(?:{inner}(?:{layout.comma}{inner})*)?{layout.close}\]")
            options.append(rf"\{{{layout.open}(?:{member}(?:{layout.comma}{member})*)?{layout.close}\}}")
        return _alternation(options)

    @staticmethod
    def _count(schema: Mapping, keyword: str, path: str, default: int | None) -> int | None:
        if keyword not in schema:
            return default
        value = schema[keyword]
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConstraintError(f"'{keyword}' at {path} must be a non-negative integer, got {value!r}")
        return value


def _ordered_members(members: list[tuple[str, bool]], comma: str) -> str:
    """Regex for the listed members in order, optional ones possibly absent, comma-separated; at least one
    member present (an object whose members are all optional adds its empty form itself)."""
    first_required = next((i for i, (_, required) in enumerate(members) if required), None)
    if first_required is not None:
        parts = [f"(?:{member}{comma})?" for member, _ in members[:first_required]]
        parts.append(members[first_required][0])
        for member, required in members[first_required + 1 :]:
            parts.append(f"{comma}{member}" if required else f"(?:{comma}{member})?")
        return "".join(parts)
    # all optional: choose which member comes first, the later ones each optional
    options = []
    for i, (member, _) in enumerate(members):
        options.append(member + "".join(f"(?:{comma}{m})?" for m, _ in members[i + 1 :]))
    return "(?:" + "|".join(options) + ")"


def _load_schema(schema: object) -> object:
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    if hasattr(schema, "json_schema") and callable(schema.json_schema) and not isinstance(schema, Mapping):
        return schema.json_schema()  # pydantic TypeAdapter
    if isinstance(schema, (str, bytes)):
        try:
            return json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ConstraintError(f"json_schema is not valid JSON: {exc}") from None
    if isinstance(schema, (Mapping, bool)):
        return schema
    raise ConstraintError(
        f"json_schema must be a dict, a JSON string, a bool or a pydantic model class, got {type(schema).__name__}"
    )


def schema_to_regex(schema: object, *, whitespace: str = "compact", max_recursion_depth: int = 5) -> str:
    """Regex (Python syntax, fullmatch) for the JSON texts that `schema` accepts.

    schema: a dict, a JSON string, a bool, or a pydantic model class. Raises ConstraintError
    for unsupported keywords (naming keyword and path), bad schemas, and required recursion
    deeper than max_recursion_depth.
    """
    if isinstance(max_recursion_depth, bool) or not isinstance(max_recursion_depth, int) or max_recursion_depth < 1:
        raise ConstraintError(f"max_recursion_depth must be a positive integer, got {max_recursion_depth!r}")
    root = _load_schema(schema)
    converter = _Converter(root, _Layout.of(whitespace), max_recursion_depth)
    try:
        return converter.convert(root, "#")
    except _Prune as exc:
        raise ConstraintError(exc.message) from None
    except RecursionError:
        raise ConstraintError(f"the schema nests too deeply to convert (max_recursion_depth={max_recursion_depth})") from None
