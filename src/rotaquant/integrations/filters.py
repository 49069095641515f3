"""Metadata filters of the framework stores, compiled to SQLite over the stored metadata.

A filter is a tree: :class:`Condition` (an operator on one metadata key) or :class:`Group`
(``and`` / ``or`` / ``not`` of filters). LangChain-style dicts (``{"k": v}``, ``{"k": {"$in":
[..]}}``, ``{"$and": [..]}``) parse with :func:`from_mongo_dict`; the LlamaIndex adapter builds
the tree from its ``MetadataFilters``. :func:`to_sql` gives a ``WHERE`` clause over the
``metadata`` JSON column, so a filtered search asks SQLite for the allowed rows and hands them
to the index scan as its ``allow`` set (never over-fetching and post-filtering).

Semantics: a key absent from a document's metadata matches ``ne``, ``nin`` and ``is_empty``
only; comparisons are SQLite's (numbers by value, strings by code point; ``True`` equals 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCALARS = (str, int, float, bool)
LIST_OPERATORS = ("in", "nin", "any", "all")
OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    *LIST_OPERATORS,
    "contains",
    "text_match",
    "text_match_insensitive",
    "is_empty",
)
COMPARISONS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True)
class Condition:
    """``metadata[key] <op> value``."""

    op: str
    key: str
    value: Any = None

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unsupported filter operator {self.op!r}; supported: {OPERATORS}")
        if not isinstance(self.key, str) or not self.key or '"' in self.key:
            raise ValueError(f"filter keys must be non-empty strings without '\"': {self.key!r}")
        if self.op in LIST_OPERATORS:
            if not isinstance(self.value, (list, tuple)) or not all(
                isinstance(v, SCALARS) for v in self.value
            ):
                raise ValueError(f"{self.op!r} on {self.key!r} needs a list of str/int/float/bool")
            object.__setattr__(self, "value", tuple(self.value))  # hashable: filters are cached
        elif self.op == "is_empty":
            pass
        elif self.op in ("text_match", "text_match_insensitive"):
            if not isinstance(self.value, str):
                raise ValueError(f"{self.op!r} on {self.key!r} needs a string")
        elif not isinstance(self.value, SCALARS):
            raise ValueError(
                f"filter value for {self.key!r} must be str, int, float or bool, "
                f"got {type(self.value).__name__}"
            )


@dataclass(frozen=True)
class Group:
    """``and`` / ``or`` of ``parts``, or ``not`` of its one part."""

    op: str
    parts: tuple[Condition | Group, ...]

    def __post_init__(self) -> None:
        if self.op not in ("and", "or", "not"):
            raise ValueError(f"unsupported filter condition {self.op!r}; use and / or / not")
        if self.op == "not" and len(self.parts) != 1:
            raise ValueError("'not' takes exactly one filter")
        if not self.parts:
            raise ValueError(f"'{self.op}' needs at least one filter")


Filter = Condition | Group

_MONGO = {f"${op}": op for op in ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")}


def from_mongo_dict(spec: dict) -> Filter:
    """``{"k": v, "j": {"$in": [..]}, "$or": [{..}, {..}]}`` → a filter (keys combine with
    and). Operators: $eq $ne $gt $gte $lt $lte $in $nin, $and $or $not."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"a filter must be a non-empty dict, got {spec!r}")
    parts: list[Filter] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"{key} takes a non-empty list of filters")
            parts.append(Group(key[1:], tuple(from_mongo_dict(v) for v in value)))
        elif key == "$not":
            parts.append(Group("not", (from_mongo_dict(value),)))
        elif key.startswith("$"):
            raise ValueError(f"unsupported filter operator {key!r}")
        elif isinstance(value, dict):
            for operator, operand in value.items():
                if operator not in _MONGO:
                    raise ValueError(
                        f"unsupported filter operator {operator!r} on {key!r}; "
                        f"supported: {', '.join(_MONGO)}"
                    )
                parts.append(Condition(_MONGO[operator], key, operand))
        else:
            parts.append(Condition("eq", key, value))
    return parts[0] if len(parts) == 1 else Group("and", tuple(parts))


def to_sql(spec: Filter, column: str = "metadata") -> tuple[str, list]:
    """A SQLite boolean expression over the JSON ``column`` and its parameters."""
    if isinstance(spec, Group):
        compiled = [to_sql(part, column) for part in spec.parts]
        params = [p for _, ps in compiled for p in ps]
        if spec.op == "not":  # a condition on an absent key is NULL: count it as false
            return f"NOT COALESCE(({compiled[0][0]}), 0)", params
        joiner = " AND " if spec.op == "and" else " OR "
        return "(" + joiner.join(f"({sql})" for sql, _ in compiled) + ")", params
    path = f'$."{spec.key}"'
    value = f"json_extract({column}, ?)"
    kind = f"json_type({column}, ?)"
    op = spec.op
    if op in COMPARISONS:
        return f"{value} {COMPARISONS[op]} ?", [path, spec.value]
    if op == "ne":
        return f"({value} IS NULL OR {value} != ?)", [path, path, spec.value]
    if op in ("in", "nin"):
        if not spec.value:
            return ("0" if op == "in" else "1"), []
        marks = ", ".join("?" * len(spec.value))
        if op == "in":
            return f"{value} IN ({marks})", [path, *spec.value]
        return f"({value} IS NULL OR {value} NOT IN ({marks}))", [path, path, *spec.value]
    each = f"SELECT value FROM json_each({column}, ?)"
    if op == "contains":
        return f"EXISTS ({each} WHERE value = ?)", [path, spec.value]
    if op == "any":
        marks = ", ".join("?" * len(spec.value))
        return f"EXISTS ({each} WHERE value IN ({marks}))", [path, *spec.value]
    if op == "all":
        if not spec.value:
            return "1", []
        marks = ", ".join("?" * len(set(spec.value)))
        count = (
            f"(SELECT COUNT(DISTINCT value) FROM json_each({column}, ?) WHERE value IN ({marks}))"
        )
        return f"{count} = ?", [path, *set(spec.value), len(set(spec.value))]
    if op == "text_match":
        return f"instr({value}, ?) > 0", [path, spec.value]
    if op == "text_match_insensitive":
        return f"instr(lower({value}), lower(?)) > 0", [path, spec.value]
    # is_empty: absent, null, "" or []
    empty = (
        f"({kind} IS NULL OR {kind} = 'null' OR {value} = '' OR "
        f"({kind} = 'array' AND json_array_length({column}, ?) = 0))"
    )
    return empty, [path, path, path, path, path]
