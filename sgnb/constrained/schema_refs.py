"""Local `$ref`s of a JSON schema: resolving them, finding recursion, and whether any value can match.

A recursive schema (a `$ref` that leads back to itself, directly or through other `$defs`) has no finite
regex; the engine sends it to the grammar path. Whether a recursive schema can produce a value at all
(a required child that always requires another one cannot) is checked here, so such a schema is
refused at submission instead of decoding forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from sgnb.constrained.errors import ConstraintError

# keywords whose values are data, not subschemas; `$defs` is entered only through a `$ref`
_NOT_SUBSCHEMAS = frozenset({"enum", "const", "default", "examples", "$defs", "definitions", "required", "title",
                             "description", "$comment", "pattern", "format", "type"})


def resolve_ref(root: object, ref: object, path: str) -> object:
    """The subschema a local `$ref` (a JSON pointer starting with '#') points at; ConstraintError otherwise."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise ConstraintError(f"only local '$ref' (starting with '#') is supported, got {ref!r} at {path}")
    target = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(target, Mapping) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise ConstraintError(f"'$ref' {ref!r} at {path} does not resolve")
    return target


def _subschemas(node: object) -> list[object]:
    """Every schema directly inside `node` (properties' values, items, branches, ...), `$ref` targets aside."""
    if isinstance(node, list):
        return list(node)
    if not isinstance(node, Mapping):
        return []
    found: list[object] = []
    for key, value in node.items():
        if key in _NOT_SUBSCHEMAS or key == "$ref":
            continue
        if key in ("properties", "patternProperties", "dependentSchemas") and isinstance(value, Mapping):
            found += list(value.values())
        elif isinstance(value, (Mapping, list)):
            found.append(value)
    return found


def is_recursive(root: object) -> bool:
    """Whether some `$ref` reachable from the root leads back to itself."""
    def visit(node: object, stack: tuple[str, ...]) -> bool:
        if isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if ref in stack:
                return True
            if visit(resolve_ref(root, ref, ref), (*stack, ref)):
                return True
        return any(visit(child, stack) for child in _subschemas(node))

    return visit(root, ())


def can_finish(root: object) -> bool:
    """Whether some finite JSON value can satisfy the schema's structure (required properties, minItems,
    branches and `$ref`s); keywords that only narrow values (lengths, patterns, bounds) count as satisfiable.

    A derivation never needs to pass through the same `$ref` twice on one path (the inner occurrence
    could replace the outer), so a `$ref` already on the path counts as a dead end.
    """
    def ok(node: object, stack: tuple[str, ...]) -> bool:
        if node is False:
            return False
        if not isinstance(node, Mapping):
            return True
        if "$ref" in node:
            ref = node["$ref"]
            if ref in stack or not ok(resolve_ref(root, ref, ref), (*stack, ref)):
                return False
        if any(not ok(branch, stack) for branch in node.get("allOf", [])):
            return False
        for combinator in ("anyOf", "oneOf"):
            if combinator in node and not any(ok(branch, stack) for branch in node[combinator]):
                return False
        if "enum" in node and not node["enum"]:
            return False
        types = node.get("type")
        types = [types] if isinstance(types, str) else types
        if types is not None and set(types) != {"object"} and set(types) != {"array"}:
            return True         # a scalar type (or a choice that includes one) always has some value
        properties = node.get("properties", {})
        required = node.get("required", [])
        if isinstance(properties, Mapping) and any(not ok(properties[name], stack)
                                                   for name in required if name in properties):
            return False
        num_items, prefix = node.get("minItems", 0), list(node.get("prefixItems", []))
        items = prefix[:num_items] + ([node["items"]] if "items" in node and num_items > len(prefix) else [])
        return all(ok(item, stack) for item in items)

    return ok(root, ())
