"""The one error type of the constrained-decoding package."""

from __future__ import annotations


class ConstraintError(ValueError):
    """A constraint (regex, JSON schema, choices, type) that cannot be compiled.

    Raised at submission time, never mid-generation: invalid or unsupported regex syntax,
    a pattern that no token sequence of the vocabulary can complete, an unsupported JSON
    Schema keyword, or recursion deeper than the set limit. The message names the pattern
    (or the schema path) and the problem.
    """
