"""JSON Schema to a compact EBNF grammar, for structured output without runaway whitespace.

openvino-genai hands ``StructuredOutputConfig(json_schema=...)`` to xgrammar, whose converter lets the model
write any amount of whitespace between two JSON tokens (``any_whitespace=true``), and openvino-genai has no
switch for it. Small models use that room: on a four-property schema SmolLM2-135M wrote newlines until
``max_tokens`` (150) in 7 of 8 generations when the prompt did not ask for JSON, so the object never closed.
The grammar built here allows no whitespace except one space after ``:`` and after ``,``: ``json.dumps``'s
layout, the one models saw most in training (0 of 8 failed). It is written in xgrammar's EBNF dialect for
``StructuredOutputConfig(grammar=...)`` or ``StructuredOutputConfig.EBNF(...)`` in a structural tag.

The grammar accepts only documents valid against the schema (a subset of them: one layout, one spelling of
each literal), and ``json_schema_to_ebnf`` returns ``None`` for anything it cannot express exactly, so the
caller falls back to xgrammar's converter: never wrong, only sometimes absent.

Supported: ``type`` (one or a list); ``enum``/``const`` (any JSON values); ``properties`` and ``required``
(properties in schema order, optional ones may be left out); ``additionalProperties``: with
``properties`` only the listed ones are written whatever it says (as OpenAI's strict mode), without them
false, any object, or a map of one schema; ``items``, ``prefixItems``, ``minItems``, ``maxItems``;
``minLength``/``maxLength`` (a character is a raw one or an escape); ``minimum``/``maximum`` and their
exclusive forms (a fractional bound moves inwards to a whole number; a bounded ``number`` is written with
at most six fraction digits and no exponent, and bounds beyond 1e9 give ``None``); ``anyOf``; ``oneOf`` when
its branches cannot overlap (disjoint types, or a string ``const`` tag); ``allOf`` of one schema; local
``$ref`` (recursion included); ``true``/``{}``. Annotations (``title``, ``description``, ``default``,
``examples``...) are ignored. Anything else gives ``None``: ``pattern``, ``format`` (a model must not
write "tomorrow" for a date-time, and xgrammar checks some formats), ``multipleOf``, ``uniqueItems``,
``patternProperties``, ``minProperties``, ``if``/``then``, ``not``, remote refs...
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any
from urllib.parse import unquote

logger = logging.getLogger(__name__)

# Keywords that never change which documents are valid (and the homes of $ref targets), so ignored here.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "$schema", "deprecated", "readOnly"}
    | {"writeOnly", "discriminator", "$defs", "definitions"}
)
_TYPE_KEYWORDS = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems"}),
    "string": frozenset({"minLength", "maxLength"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
}
_TYPE_KEYWORDS["integer"] = _TYPE_KEYWORDS["number"]
_ALL_TYPE_KEYWORDS = frozenset().union(*_TYPE_KEYWORDS.values())
_JSON_TYPES = ("object", "array", "string", "number", "boolean", "null")
_MAX_DIGITS = 30
"""Longest integer bound handled: digit-range rules grow with the square of its length."""
_MAX_DECIMAL_BOUND = 10**9
"""Largest bound on a ``number``: below it, six fraction digits always keep a float clear of the bound."""
_FRACTION = '("." [0-9]{1,6})?'

_BASE: dict[str, tuple[str, tuple[str, ...]]] = {  # name: (body, base rules it uses)
    "value": (
        'any-object | any-array | string | number | "true" | "false" | "null"',
        ("any-object", "any-array", "string", "number"),
    ),
    "any-object": ('"{" (string ": " value (", " string ": " value)*)? "}"', ("string", "value")),
    "any-array": ('"[" (value (", " value)*)? "]"', ("value",)),
    "string": (r'"\"" char* "\""', ("char",)),
    "char": (r'[^"\\\u0000-\u001f] | "\\" escape', ("escape",)),
    # No \u escapes of UTF-16 surrogates: a lone one is not Unicode, and Python counts an escaped pair as
    # one character, which would break minLength/maxLength (counted here as one per char).
    "escape": (r'["\\/bfnrt] | "u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2})', ()),
    "integer": ('"0" | "-"? [1-9] [0-9]*', ()),
    "number": ('"-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [+-]? [0-9]+)?', ()),
}


class _UnsupportedError(Exception):
    """The schema uses something this converter cannot express exactly."""


def json_schema_to_ebnf(schema: dict | bool) -> str | None:
    """An xgrammar EBNF grammar (rule ``root``) for the compact JSON documents valid against ``schema``.

    Args:
        schema: A JSON Schema (draft 2020-12 keywords) as decoded JSON.

    Returns:
        The grammar, or ``None`` when the schema uses something not supported (see the module docstring).
    """
    if isinstance(schema, dict):
        schema = {key: value for key, value in schema.items() if key != "$id"}  # refs stay document-local
    try:
        grammar = _Builder(schema).grammar()
        grammar.encode()  # a lone surrogate in a literal cannot reach the engine
    # Malformed schemas (a keyword with the wrong JSON type) land in the built-in errors; xgrammar's own
    # converter then reports them.
    except (_UnsupportedError, RecursionError, TypeError, ValueError, KeyError, IndexError) as exc:
        logger.debug("no compact grammar for this JSON schema: %s", exc)
        return None
    return grammar


def _lit(text: str) -> str:
    """``text`` as an xgrammar string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m[0]):04x}", escaped) + '"'


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)


def _hint(text: str) -> str:
    """A rule-name fragment from any text."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:24] or "x"


def _alt(options: list[str]) -> str:
    """Alternatives as one expression that can stand in a sequence."""
    options = list(dict.fromkeys(options))
    return options[0] if len(options) == 1 else f"({' | '.join(options)})"


def _times(atom: str, low: int, high: int | None) -> str:
    """``atom`` (an identifier or a group) repeated ``low`` to ``high`` times (``None``: no limit)."""
    if high == 0:
        return ""
    suffix = {(1, 1): "", (0, 1): "?", (0, None): "*", (1, None): "+"}.get((low, high))
    if suffix is None:
        suffix = f"{{{low}}}" if low == high else f"{{{low},{'' if high is None else high}}}"
    return atom + suffix


def _count(schema: dict, key: str, default: int | None) -> int | None:
    value = schema.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise _UnsupportedError(f"{key} is not a non-negative integer")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def _digits(low: str, high: str) -> list[str]:
    """Decimal strings of one length from ``low`` to ``high``, both included, as alternatives."""
    if low == high:
        return [_lit(low)]
    rest = len(low) - 1
    if rest == 0:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [f'"{low[0]}" {_alt(_digits(low[1:], high[1:]))}']
    options, first, last = [], int(low[0]), int(high[0])
    if low[1:] != "0" * rest:
        options.append(f'"{low[0]}" {_alt(_digits(low[1:], "9" * rest))}')
        first += 1
    if high[1:] != "9" * rest:
        last -= 1
    if first <= last:
        span = f'"{first}"' if first == last else f"[{first}-{last}]"
        options.append(f"{span} {_times('[0-9]', rest, rest)}")
    if last < int(high[0]):
        options.append(f'"{high[0]}" {_alt(_digits("0" * rest, high[1:]))}')
    return options


def _naturals(low: int, high: int | None) -> list[str]:
    """Integers from ``low`` (>= 0) to ``high`` (``None``: no limit) without leading zeros."""
    if len(str(low)) > _MAX_DIGITS or (high is not None and len(str(high)) > _MAX_DIGITS):
        raise _UnsupportedError("integer bound too long")
    top = len(str(low)) if high is None else len(str(high))
    options = []
    for length in range(len(str(low)), top + 1):
        start = max(low, 10 ** (length - 1) if length > 1 else 0)
        end = 10**length - 1 if high is None else min(high, 10**length - 1)
        if start <= end:
            options.append(_alt(_digits(str(start), str(end))))
    if high is None:
        options.append(f"[1-9] [0-9]{{{len(str(low))},}}")
    return options


def _magnitudes(low: int, low_open: bool, high: int | None, high_open: bool, fraction: bool) -> list[str]:
    """Unsigned numbers between ``low`` and ``high`` (open ends excluded), with fraction digits if allowed."""
    if not fraction:
        end = None if high is None else high - high_open
        return _naturals(low + low_open, end) if end is None or low + low_open <= end else []
    options = []
    # A whole part n below high keeps n.xxx below high; n = low is written with a fraction when low is open.
    end = None if high is None else high - 1
    if end is None or low + low_open <= end:
        options.append(f"{_alt(_naturals(low + low_open, end))} {_FRACTION}")
    if low_open and (high is None or low < high):
        options.append(f'"{low}." [0-9]{{0,5}} [1-9]')
    if high is not None and not high_open and (low < high or (low == high and not low_open)):
        options.append(f'"{high}" ("." [0]{{1,6}})?')
    return options


def _limit(schema: dict, lower: bool, integer: bool) -> tuple[int, bool] | None:
    """The tighter bound on one side as (whole number, excluded); a fractional one moves inwards."""
    keys = ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
    found = [(schema[key], key.startswith("ex")) for key in keys if key in schema]
    for value, _ in found:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _UnsupportedError(f"bound {value!r} is not a finite number")
        if not integer and abs(value) >= _MAX_DECIMAL_BOUND:
            raise _UnsupportedError("number bound too large")
    if not found:
        return None
    value, excluded = max(found) if lower else min(found, key=lambda bound: (bound[0], not bound[1]))
    if value == int(value):
        return int(value), excluded
    return (math.ceil(value) if lower else math.floor(value)), False


class _Builder:
    """Named rules for one schema, built by walking it once."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.rules: dict[str, str] = {}
        self.refs: dict[str, str] = {}
        self.unguarded: set[str] = set()
        """Refs entered since the last ``{`` or ``[``: a cycle among them would write nothing forever."""

    def grammar(self) -> str:
        body = self.expr(self.root, "root")
        if body != "root":
            self.rules["root"] = body
        names = sorted(self.rules, key=lambda name: name != "root")
        return "".join(f"{name} ::= {self.rules[name]}\n" for name in names)

    def rule(self, hint: str, body: str = "") -> str:
        """Add a rule named after ``hint`` (a path); a ``$ref``'s reserved rule is filled by its own body.

        Names: ``root``, paths as ``root-<property>-...``, refs as ``def.<name>``, a ``.N`` suffix for
        repeats: a path never spells a ref's name, so only the ref's own schema fills its rule.
        """
        if body and self.rules.get(hint) == "":
            self.rules[hint] = body
            return hint
        name, n = hint, 1
        while name in self.rules:
            n += 1
            name = f"{hint}.{n}"
        self.rules[name] = body
        return name

    def base(self, name: str) -> str:
        if name not in self.rules:
            body, uses = _BASE[name]
            self.rules[name] = body
            for used in uses:
                self.base(used)
        return name

    def expr(self, schema: Any, path: str) -> str:
        """An expression (an identifier, a literal, a group or a plain sequence) for ``schema``."""
        if schema is True or schema == {}:
            return self.base("value")
        if not isinstance(schema, dict):
            raise _UnsupportedError("a false schema")
        keys = set(schema) - _ANNOTATIONS
        if keys & {"$ref", "anyOf", "oneOf", "allOf"}:
            return self.composition(schema, keys, path)
        if keys & {"enum", "const"}:
            return self.literals(schema, keys)
        if unknown := keys - _ALL_TYPE_KEYWORDS - {"type"}:
            raise _UnsupportedError(f"keywords {sorted(unknown)}")
        if not keys:
            return self.base("value")
        types = self.types(schema, keys)
        return _alt(
            [self.typed(name, schema, path if len(types) == 1 else f"{path}-{name}") for name in types]
        )

    def composition(self, schema: dict, keys: set[str], path: str) -> str:
        if len(keys) > 1:
            raise _UnsupportedError(f"{sorted(keys)} together")
        if "$ref" in keys:
            return self.ref(schema["$ref"])
        if "allOf" in keys:
            if len(schema["allOf"]) != 1:
                raise _UnsupportedError("allOf of more than one schema")
            return self.expr(schema["allOf"][0], path)
        branches = schema["anyOf"] if "anyOf" in keys else schema["oneOf"]
        if not branches or ("oneOf" in keys and not self.exclusive(branches)):
            raise _UnsupportedError("oneOf whose branches may overlap")
        return _alt([self.expr(branch, f"{path}-{i}") for i, branch in enumerate(branches)])

    def literals(self, schema: dict, keys: set[str]) -> str:
        if keys - {"enum", "const", "type"} or {"enum", "const"} <= keys:
            raise _UnsupportedError(f"enum or const with {sorted(keys)}")
        values = [schema["const"]] if "const" in keys else list(schema["enum"])
        if "type" in keys:
            types = self.types(schema, keys)
            whole = "integer" in types  # then "number" is not: it would have replaced "integer"
            values = [
                v for v in values if _kind(v) in types or whole and _kind(v) == "number" and v == int(v)
            ]
        if not values:
            raise _UnsupportedError("no value allowed")
        return _alt([_lit(_dumps(value)) for value in values])

    def types(self, schema: dict, keys: set[str]) -> list[str]:
        declared = schema.get("type")
        if declared is None:  # keywords that apply to one type only imply it (a subset: still valid)
            implied = [name for name in _JSON_TYPES[:4] if keys & _TYPE_KEYWORDS[name]]
            return implied or list(_JSON_TYPES)
        types = [declared] if isinstance(declared, str) else list(declared)
        if not types or not set(types) <= {*_JSON_TYPES, "integer"}:
            raise _UnsupportedError(f"type {declared!r}")
        if "number" in types:  # numbers include the integers
            types = [name for name in types if name != "integer"]
        return list(dict.fromkeys(types))

    def typed(self, name: str, schema: dict, path: str) -> str:
        if name in ("boolean", "null"):
            return '("true" | "false")' if name == "boolean" else '"null"'
        if name == "string":
            low, high = _count(schema, "minLength", 0), _count(schema, "maxLength", None)
            if high is not None and low > high:
                raise _UnsupportedError("minLength above maxLength")
            if (low, high) == (0, None):
                return self.base("string")
            return f'"\\"" {_times(self.base("char"), low, high)} "\\""' if high != 0 else r'"\"\""'
        if name in ("number", "integer"):
            return self.number(schema, integer=name == "integer")
        saved, self.unguarded = self.unguarded, set()  # "{" or "[" is written before anything inside
        try:
            return self.object(schema, path) if name == "object" else self.array(schema, path)
        finally:
            self.unguarded = saved

    def number(self, schema: dict, integer: bool) -> str:
        low, high = _limit(schema, True, integer), _limit(schema, False, integer)
        if low is None and high is None:
            return self.base("integer" if integer else "number")
        options = []
        if high is None or high[0] > 0 or high == (0, False):
            start = low if low is not None and low[0] >= 0 else (0, False)
            options += _magnitudes(*start, *(high or (None, False)), not integer)
        if low is None or low[0] < 0:  # negatives as "-" and a magnitude above zero: never "-0"
            start = (-high[0], high[1]) if high is not None and high[0] < 0 else (0, True)
            end = (-low[0], low[1]) if low is not None else (None, False)
            options += [f'"-" {m}' for m in _magnitudes(*start, *end, not integer)]
        if not options:
            raise _UnsupportedError("no number between the bounds")
        return _alt(options)

    def object(self, schema: dict, path: str) -> str:
        properties, required = schema.get("properties", {}), schema.get("required", [])
        if not set(required) <= set(properties):
            raise _UnsupportedError("a required property without a schema")
        if not properties:
            extra = schema.get("additionalProperties", True)
            if extra is False:
                return '"{}"'
            if extra is True or extra == {}:
                return self.base("any-object")
            pair = f'{self.base("string")} ": " {self.expr(extra, f"{path}-value")}'
            return self.rule(path, f'"{{" ({pair} (", " {pair})*)? "}}"')
        # Only the listed properties, whatever additionalProperties says (as OpenAI's strict mode): the
        # documents written are then a subset of the valid ones, which is all this grammar promises.
        items = [
            (f"{_lit(_dumps(key) + ': ')} {self.expr(sub, f'{path}-{_hint(key)}')}", key in required)
            for key, sub in properties.items()
            if sub is not False or key in required  # false: the property must be absent
        ]
        after = [f'", " {text}' if needed else f'(", " {text})?' for text, needed in items]
        first = next((i for i, (_, needed) in enumerate(items) if needed), None)
        if first is not None:  # optional ones before it end with ", ", later ones start with it
            parts = [f'({text} ", ")?' for text, _ in items[:first]] + [items[first][0], *after[first + 1 :]]
            return self.rule(path, " ".join(['"{"', *parts, '"}"']))
        # All optional: the first one written has no comma. One rule per suffix keeps this linear.
        options, rest = [], ""
        for i in range(len(items) - 1, -1, -1):
            options.append(f"{items[i][0]} {rest}".strip())
            if i > 0:
                rest = self.rule(f"{path}-rest", f"{after[i]} {rest}".strip())
        return self.rule(path, f'"{{" ({" | ".join(reversed(options))})? "}}"') if items else '"{}"'

    def array(self, schema: dict, path: str) -> str:
        prefix, items = schema.get("prefixItems", []), schema.get("items", True)
        low, high = _count(schema, "minItems", 0), _count(schema, "maxItems", None)
        if not isinstance(prefix, list) or isinstance(items, list):
            raise _UnsupportedError("items as a list (before draft 2020-12)")
        if items is False:
            high = len(prefix) if high is None else min(high, len(prefix))
        if high is not None and low > high:
            raise _UnsupportedError("no array length allowed")
        if not prefix and items in (True, {}) and (low, high) == (0, None):
            return self.base("any-array")
        fixed = [self.expr(sub, f"{path}-{i}") for i, sub in enumerate(prefix[:high])]
        sequence = ""  # built from the end: each element optional from minItems on
        if high is None or high > len(fixed):
            item = self.expr(items, f"{path}-item")
            more, most = max(low - len(fixed), 0), None if high is None else high - len(fixed)
            if fixed:
                sequence = _times(f'(", " {item})', more, most)
            else:
                rest = _times(f'(", " {item})', max(more - 1, 0), None if most is None else most - 1)
                sequence = " ".join(filter(None, [item, rest]))
                sequence = sequence if more else f"({sequence})?"
        for i in range(len(fixed) - 1, -1, -1):
            element = " ".join(filter(None, ['", "' if i else "", fixed[i], sequence]))
            sequence = element if i < low else f"({element})?"
        return self.rule(path, f'"[" {sequence} "]"' if sequence else '"[]"')

    def ref(self, ref: str) -> str:
        if ref in self.unguarded:
            raise _UnsupportedError(f"$ref {ref} reaches itself without writing anything")
        if ref in self.refs:
            return self.refs[ref]
        name = self.refs[ref] = self.rule(f"def.{_hint(ref.rsplit('/', 1)[-1].lstrip('#') or 'root')}")
        self.unguarded.add(ref)
        try:
            body = self.expr(self.resolve(ref), name)
        finally:
            self.unguarded.discard(ref)
        if body != name:
            self.rules[name] = body
        return name

    def resolve(self, ref: str) -> Any:
        """The schema a local ``$ref`` (a JSON pointer after ``#``) names."""
        if ref != "#" and not ref.startswith("#/"):
            raise _UnsupportedError(f"$ref {ref} is not local")
        target = self.root
        for part in ref[2:].split("/") if ref != "#" else []:
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target[part]
        return target

    def deref(self, schema: Any) -> Any:
        for _ in range(32):
            if not (isinstance(schema, dict) and set(schema) - _ANNOTATIONS == {"$ref"}):
                return schema
            schema = self.resolve(schema["$ref"])
        raise _UnsupportedError("$ref chain too long")

    def exclusive(self, branches: list) -> bool:
        """Whether no document matches two branches, so oneOf may be written as anyOf.

        True when the branches' JSON types are disjoint, or when all are objects tagged by a different
        string ``const`` of one property each requires (a discriminated union).
        """
        kinds = [self.kinds(branch) for branch in branches]
        if None not in kinds and sum(map(len, kinds)) == len(set().union(*kinds)):
            return True
        first = self.deref(branches[0])
        for key in first.get("required", []) if isinstance(first, dict) else []:
            tags = [self.tag(branch, key) for branch in branches]
            if None not in tags and len(set(tags)) == len(tags):
                return True
        return False

    def kinds(self, schema: Any) -> set[str] | None:
        """The JSON types a branch allows (integer counted as number), or None if not plain to see."""
        schema = self.deref(schema)
        if not isinstance(schema, dict):
            return None
        if "const" in schema or "enum" in schema:
            return {_kind(value) for value in ([schema["const"]] if "const" in schema else schema["enum"])}
        declared = schema.get("type")
        if declared is None:
            return None
        declared = [declared] if isinstance(declared, str) else declared
        return {"number" if name == "integer" else name for name in declared}

    def tag(self, schema: Any, key: str) -> str | None:
        """The string ``const`` of an object branch's required ``key``, if it has one."""
        schema = self.deref(schema)
        if isinstance(schema, dict) and schema.get("type") == "object" and key in schema.get("required", ()):
            prop = self.deref(schema.get("properties", {}).get(key))
            if isinstance(prop, dict) and isinstance(prop.get("const"), str):
                return prop["const"]
        return None
