"""JSON schemas become compact EBNF grammars that accept exactly the valid compact documents.

Three checks: a small EBNF matcher written here runs each grammar against tables of documents and
``jsonschema`` agrees with it on every one; every grammar compiles in the real xgrammar (through the
grammar checker's probe); and on the demo model the grammar, unlike openvino-genai's own ``json_schema``
path, always yields a parseable, valid document.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import jsonschema
import openvino_genai as ov_genai
import pytest

from adapters.base import JsonConstraint
from adapters.json_grammar import json_schema_to_ebnf
from adapters.openvino.worker.constraint import build, lower
from adapters.openvino.worker.grammar_check import GrammarChecker

# --- a matcher for the EBNF subset json_grammar writes -------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<lit>"(?:[^"\\]|\\.)*")|(?P<cls>\[(?:[^\]\\]|\\.)*\])|(?P<rep>\{\d+(?:,\d*)?\})'
    r"|(?P<name>[A-Za-z_][\w.-]*)|(?P<op>[()|*+?]))"
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> list[str]:
    """The characters of a literal's or a class's body (xgrammar's escapes: \\uXXXX, \\n, \\<char>)."""
    chars, i = [], 0
    while i < len(text):
        if text[i] != "\\":
            chars.append(text[i])
            i += 1
        elif text[i + 1] == "u":
            chars.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            chars.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
    return chars


def _char_class(body: str) -> tuple:
    negated = body.startswith("^")
    chars = _unescape(body[negated:])
    ranges, i = [], 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            ranges.append((chars[i], chars[i + 2]))
            i += 3
        else:
            ranges.append((chars[i], chars[i]))
            i += 1
    return ("class", negated, tuple(ranges))


def _parse_body(text: str) -> tuple:
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text.strip())]
    assert "".join(value for _, value in tokens).replace(" ", "") == text.replace(" ", ""), text
    position = 0

    def choices() -> tuple:
        nonlocal position
        options = [sequence()]
        while position < len(tokens) and tokens[position][1] == "|":
            position += 1
            options.append(sequence())
        return ("alt", tuple(options))

    def sequence() -> tuple:
        nonlocal position
        items = []
        while position < len(tokens) and tokens[position][1] not in ("|", ")"):
            kind, value = tokens[position]
            position += 1
            if value == "(":
                item = choices()
                assert tokens[position][1] == ")"
                position += 1
            elif kind == "lit":
                item = ("lit", "".join(_unescape(value[1:-1])))
            elif kind == "cls":
                item = _char_class(value[1:-1])
            else:
                assert kind == "name", value
                item = ("ref", value)
            if position < len(tokens) and (tokens[position][0] == "rep" or tokens[position][1] in "*+?"):
                low, high = _quantifier(tokens[position][1])
                item = ("rep", item, low, high)
                position += 1
            items.append(item)
        return ("seq", tuple(items))

    result = choices()
    assert position == len(tokens), text
    return result


def _quantifier(text: str) -> tuple[int, int | None]:
    if text in ("*", "+", "?"):
        return {"*": (0, None), "+": (1, None), "?": (0, 1)}[text]
    low, _, high = text[1:-1].partition(",")
    return int(low), (int(low) if "," not in text else int(high) if high else None)


def parse_grammar(grammar: str) -> dict[str, tuple]:
    """Rules by name; every referenced rule must be defined."""
    rules = {}
    for line in grammar.splitlines():
        name, _, body = line.partition(" ::= ")
        assert name not in rules and re.fullmatch(r"[A-Za-z_][\w.-]*", name), line
        rules[name] = _parse_body(body)
    assert "root" in rules
    referenced = set(re.findall(r"\('ref', '([^']+)'\)", repr(rules)))
    assert referenced <= set(rules), referenced - set(rules)
    return rules


def matches(rules: dict[str, tuple], text: str) -> bool:
    """Whether the grammar's root derives exactly ``text``."""
    return len(text) in _Matcher(rules, text).ends(("ref", "root"), 0)


class _Matcher:
    """End positions of each node's matches from a start position; rules memoized (none left-recursive)."""

    def __init__(self, rules: dict[str, tuple], text: str) -> None:
        self.rules, self.text, self.memo = rules, text, {}

    def ends(self, node: tuple, start: int) -> frozenset[int]:
        kind, text = node[0], self.text
        if kind == "lit":
            return frozenset({start + len(node[1])}) if text.startswith(node[1], start) else frozenset()
        if kind == "class":
            inside = start < len(text) and any(low <= text[start] <= high for low, high in node[2])
            return frozenset({start + 1}) if start < len(text) and inside != node[1] else frozenset()
        if kind == "ref":
            if (node[1], start) not in self.memo:
                self.memo[node[1], start] = self.ends(self.rules[node[1]], start)
            return self.memo[node[1], start]
        if kind == "alt":
            return frozenset().union(*(self.ends(option, start) for option in node[1]))
        if kind == "seq":
            positions = frozenset({start})
            for item in node[1]:
                positions = self.after(item, positions)
            return positions
        return self.repeated(*node[1:], start)

    def after(self, node: tuple, positions: frozenset[int]) -> frozenset[int]:
        return frozenset().union(*(self.ends(node, p) for p in positions))

    def repeated(self, item: tuple, low: int, high: int | None, start: int) -> frozenset[int]:
        positions, result, seen = frozenset({start}), set(), set()
        for count in itertools.count():
            if count >= low:
                result |= positions
            if (high is not None and count == high) or not positions or (count >= low and positions <= seen):
                return frozenset(result)
            seen |= positions
            positions = self.after(item, positions)


_SAMPLE_CHARS = 'aZ0 é😀"\\/{}\n\x1f\x7f'


def sample(rules: dict[str, tuple], rng: random.Random) -> str:
    """A random document the grammar derives (repeats capped at a few beyond the minimum)."""

    def walk(node: tuple) -> str:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "class" and node[1]:
            return rng.choice([c for c in _SAMPLE_CHARS if not any(a <= c <= b for a, b in node[2])])
        if kind == "class":
            low, high = rng.choice(node[2])
            return chr(rng.randint(ord(low), ord(high)))
        if kind == "ref":
            return walk(rules[node[1]])
        if kind == "alt":
            return walk(rng.choice(node[1]))
        if kind == "seq":
            return "".join(walk(item) for item in node[1])
        _, item, low, high = node
        count = rng.randint(low, low + 3 if high is None else min(high, low + 40))
        return "".join(walk(item) for _ in range(count))

    return walk(rules["root"])


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# --- schemas and documents -------------------------------------------------------------------------------

PRODUCT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "category": {"type": "string", "enum": ["kitchen", "garden", "office", "toys"]},
        "price_eur": {"type": "number", "minimum": 0, "maximum": 1000},
        "in_stock": {"type": "boolean"},
    },
    "required": ["name", "category", "price_eur", "in_stock"],
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "email": {"type": "string", "description": "ignored", "title": "Email"},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "zip": {"type": "integer", "minimum": 10000}},
            "required": ["zip"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
    },
    "required": ["name", "address"],
    "additionalProperties": False,
}
OPTIONAL = {
    "type": "object",
    "properties": {
        "a": {"type": "boolean"},
        "b": {"type": "null"},
        "c": {"enum": [1, "x", None, [1, 2], {"k": "v", "n": [True]}]},
        "d": {"type": ["integer", "null"], "maximum": -5},
    },
}
ESCAPED_NAMES = {
    "type": "object",
    "properties": {
        'say "hi"': {"const": 'a\\b"c'},
        "back\\slash": {"type": "string", "maxLength": 3},
        "ünï/cødé ✓ 😀": {"type": "boolean"},
        "new\nline\ttab": {"type": "integer"},
    },
    "required": ['say "hi"', "back\\slash", "ünï/cødé ✓ 😀", "new\nline\ttab"],
    "additionalProperties": False,
}
TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
            },
            "required": ["value"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}
ANY_OF = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": -3, "maximum": 7},
        {"type": "string", "minLength": 2, "maxLength": 3},
        {"type": "null"},
        {"$ref": "#/definitions/pair"},
    ],
    "definitions": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}]}},
}
ONE_OF_TAGGED = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 0}},
            "required": ["kind", "r"],
        },
        {
            "type": "object",
            "properties": {"kind": {"const": "square"}, "side": {"type": "integer", "minimum": 1}},
            "required": ["kind", "side"],
        },
    ]
}
ARRAYS = {
    "type": "object",
    "properties": {
        "ints": {
            "type": "array",
            "items": {"type": "integer", "minimum": -2, "exclusiveMaximum": 3},
            "minItems": 2,
            "maxItems": 4,
        },
        "tuple": {
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "boolean"}],
            "items": {"type": "null"},
            "minItems": 1,
            "maxItems": 3,
        },
        "closed": {"type": "array", "prefixItems": [{"const": 1}, {"const": 2}], "items": False},
        "anything": {"type": "array"},
        "map": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "obj": {"type": "object"},
        "value": {},
    },
    "required": ["ints"],
    "additionalProperties": False,
}

TABLE = {  # schema name: (schema, valid documents, invalid documents); documents as Python values
    "product": (
        PRODUCT,
        [
            {"name": "Kettle", "category": "kitchen", "price_eur": 24.99, "in_stock": True},
            {"name": "", "category": "toys", "price_eur": 0, "in_stock": False},
            {"name": "x" * 30, "category": "office", "price_eur": 1000, "in_stock": True},
            {"name": 'é"\\\n😀', "category": "garden", "price_eur": 999.999999, "in_stock": True},
            {"name": "Hose", "category": "garden", "price_eur": 1000.0, "in_stock": False},
            {"name": "Hose", "category": "garden", "price_eur": 0.0, "in_stock": False},
        ],
        [
            {"name": "Kettle", "category": "bathroom", "price_eur": 24.99, "in_stock": True},
            {"name": "Kettle", "category": "kitchen", "in_stock": True},
            {"name": "x" * 31, "category": "office", "price_eur": 1, "in_stock": True},
            {"name": "Kettle", "category": "kitchen", "price_eur": 1000.5, "in_stock": True},
            {"name": "Kettle", "category": "kitchen", "price_eur": 1001, "in_stock": True},
            {"name": "Kettle", "category": "kitchen", "price_eur": -0.5, "in_stock": True},
            {"name": "Kettle", "category": "kitchen", "price_eur": "12", "in_stock": True},
            {"name": "Kettle", "category": "kitchen", "price_eur": 1, "in_stock": None},
            {"name": 5, "category": "kitchen", "price_eur": 1, "in_stock": True},
        ],
    ),
    "person": (
        PERSON,
        [
            {"name": "Ann", "address": {"zip": 10000}},
            {"name": "Bo", "age": 0, "address": {"street": "Main", "zip": 99999}},
            {"name": "Cy", "age": 130, "email": "c@y", "address": {"zip": 123456}, "tags": []},
            {"name": "Dee", "email": "", "address": {"street": "", "zip": 20000}, "tags": ["a", "bcd"]},
            {"name": "Eve", "age": 7, "address": {"zip": 55555}, "tags": ["x"]},
        ],
        [
            {"address": {"zip": 10000}},
            {"name": "Ann"},
            {"name": "", "address": {"zip": 10000}},
            {"name": "Annabel", "address": {"zip": 10000}},
            {"name": "Ann", "age": 131, "address": {"zip": 10000}},
            {"name": "Ann", "age": -1, "address": {"zip": 10000}},
            {"name": "Ann", "age": 3.5, "address": {"zip": 10000}},
            {"name": "Ann", "address": {"zip": 9999}},
            {"name": "Ann", "address": {"street": "Main"}},
            {"name": "Ann", "address": {"zip": 10000, "city": "X"}},
            {"name": "Ann", "address": {"zip": 10000}, "tags": ["a", "b", "c"]},
            {"name": "Ann", "address": {"zip": 10000}, "tags": ["abcd"]},
            {"name": "Ann", "address": {"zip": 10000}, "nickname": "A"},
        ],
    ),
    "optional": (
        OPTIONAL,
        [  # every subset of the four properties, in order
            dict(subset)
            for n in range(5)
            for subset in itertools.combinations(
                [("a", True), ("b", None), ("c", {"k": "v", "n": [True]}), ("d", -5)], n
            )
        ]
        + [{"c": 1}, {"c": "x"}, {"c": None}, {"c": [1, 2]}, {"d": None}, {"d": -123456}, {"a": False}],
        [
            {"a": None},
            {"b": False},
            {"c": 2},
            {"c": [2, 1]},
            {"c": {"k": "v"}},
            {"d": -4},
            {"d": 0},
            {"d": "x"},
        ],
    ),
    "escaped names": (
        ESCAPED_NAMES,
        [
            {'say "hi"': 'a\\b"c', "back\\slash": '"\\/', "ünï/cødé ✓ 😀": True, "new\nline\ttab": -7},
            {'say "hi"': 'a\\b"c', "back\\slash": "😀é", "ünï/cødé ✓ 😀": False, "new\nline\ttab": 0},
        ],
        [
            {'say "hi"': 'a\\b"d', "back\\slash": "", "ünï/cødé ✓ 😀": True, "new\nline\ttab": 1},
            {'say "hi"': 'a\\b"c', "back\\slash": "abcd", "ünï/cødé ✓ 😀": True, "new\nline\ttab": 1},
            {'say "hi"': 'a\\b"c', "back\\slash": "", "ünï/cødé ✓ 😀": True},
        ],
    ),
    "tree": (
        TREE,
        [
            {"value": 1},
            {"value": 1, "children": []},
            {
                "value": 1,
                "children": [{"value": 2}, {"value": 3, "children": [{"value": -4, "children": []}]}],
            },
        ],
        [
            {"value": 1, "children": [{"value": 2}, {"value": 3}, {"value": 4}]},
            {"value": 1, "children": [{"children": []}]},
            {"value": 1, "children": [{"value": 2, "children": [{"value": "3"}]}]},
            {"children": []},
        ],
    ),
    "any of": (
        ANY_OF,
        [
            -2.999999,
            -2,
            0,
            6.5,
            7,
            7.0,
            "ab",
            "a\nb",
            None,
            ["x", True],
            ["x"],
            [],
            ["x", False, 1, {"a": [None]}],
        ],
        [-3, -4, 7.5, 8, "a", "abcd", True, [True], [1, "x"], {}],
    ),
    "one of, tagged": (
        ONE_OF_TAGGED,
        [{"kind": "circle", "r": 0.5}, {"kind": "square", "side": 3}, {"kind": "circle", "r": 12}],
        [{"kind": "circle", "side": 3}, {"kind": "square", "side": 0}, {"kind": "oval", "r": 1}, {"r": 1}],
    ),
    "arrays and any values": (
        ARRAYS,
        [
            {"ints": [-2, 2]},
            {"ints": [0, 1, 2, -1]},
            {"ints": [0, 0], "tuple": ["a"], "closed": [], "anything": []},
            {"ints": [0, 0], "tuple": ["a", True], "closed": [1], "anything": [1, "a", None, [{}]]},
            {"ints": [0, 0], "tuple": ["a", False, None], "closed": [1, 2], "map": {}},
            {"ints": [0, 0], "map": {"a": 0, 'b"': 5}, "obj": {}, "value": [1, {"x": None}]},
            {"ints": [0, 0], "obj": {"a": [1.5e3, -2], "b": {"c": "d"}}, "value": "text"},
            {"ints": [0, 0], "value": -0.25},
        ],
        [
            {"ints": [0]},
            {"ints": [0, 0, 0, 0, 0]},
            {"ints": [0, 3]},
            {"ints": [-3, 0]},
            {"ints": [0, 0], "tuple": []},
            {"ints": [0, 0], "tuple": [1]},
            {"ints": [0, 0], "tuple": ["a", True, None, None]},
            {"ints": [0, 0], "tuple": ["a", True, 1]},
            {"ints": [0, 0], "closed": [1, 2, 3]},
            {"ints": [0, 0], "closed": [2]},
            {"ints": [0, 0], "map": {"a": -1}},
            {"ints": [0, 0], "obj": []},
        ],
    ),
}


@pytest.mark.parametrize("name", TABLE)
def test_grammar_accepts_exactly_the_valid_compact_documents(name):
    schema, valid, invalid = TABLE[name]
    validator = jsonschema.Draft202012Validator(schema)
    assert [document for document in valid if not validator.is_valid(document)] == []  # the table itself
    assert [document for document in invalid if validator.is_valid(document)] == []
    rules = parse_grammar(json_schema_to_ebnf(schema))
    assert [compact(document) for document in valid if not matches(rules, compact(document))] == []
    assert [compact(document) for document in invalid if matches(rules, compact(document))] == []


@pytest.mark.parametrize("name", TABLE)
def test_grammar_allows_no_other_whitespace(name):
    schema, valid, _ = TABLE[name]
    rules = parse_grammar(json_schema_to_ebnf(schema))
    for document in valid:
        text = compact(document)
        variants = {text.replace(", ", ","), text.replace(": ", ":"), f" {text}", f"{text}\n"}
        variants |= {text[:i] + space + text[i:] for i in range(1, len(text)) for space in (" ", "\n", "\t")}
        for variant in variants - {text}:
            try:
                same = json.loads(variant) == document
            except ValueError:
                continue
            assert not (same and matches(rules, variant)), variant


def test_grammar_text_is_small_and_readable():
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 12}}}
    assert json_schema_to_ebnf(schema) == 'root ::= "{" ("\\"n\\": " ([1-9] | "1" [0-2]))? "}"\n'


NOT_WRITTEN = [  # valid documents outside the one layout and spelling the grammar writes
    (PRODUCT, '{"name": "K", "category": "toys", "price_eur": 1, "in_stock": true, "extra": 1}'),
    (PRODUCT, '{"category": "toys", "name": "K", "price_eur": 1, "in_stock": true}'),
    (PRODUCT, '{"name": "K", "category": "\\u0074oys", "price_eur": 1, "in_stock": true}'),
    (PRODUCT, '{"name": "K", "category": "toys", "price_eur": 1e2, "in_stock": true}'),
    (PRODUCT, '{"name": "K", "category": "toys", "price_eur": 0.1234567, "in_stock": true}'),
    (PRODUCT, '{"name": "K", "category": "toys", "price_eur": -0, "in_stock": true}'),
    ({"type": "number", "minimum": -2.5}, "-2.5"),  # a fractional bound moves inwards to a whole number
    ({"type": "string", "maxLength": 1}, '"\\ud83d\\ude00"'),  # no surrogate escapes: 😀 is written as is
    ({"type": "integer"}, "1.0"),
    ({"enum": [{"a": 1, "b": 2}]}, '{"b": 2, "a": 1}'),
]


@pytest.mark.parametrize(("schema", "text"), NOT_WRITTEN)
def test_valid_documents_in_other_spellings_are_not_written(schema, text):
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(text))
    assert not matches(parse_grammar(json_schema_to_ebnf(schema)), text)


INTEGER_RANGES = [
    {"type": "integer", "minimum": -120, "maximum": 4567},
    {"type": "integer", "exclusiveMinimum": 9.5, "exclusiveMaximum": 1000},
    {"type": "integer", "minimum": 100, "exclusiveMinimum": 100},
    {"type": "integer", "maximum": -37},
    {"type": "integer", "minimum": 0, "maximum": 0},
    {"type": "integer", "minimum": 1999, "maximum": 2001.5},
]


@pytest.mark.parametrize("schema", INTEGER_RANGES)
def test_integer_bounds_are_exact(schema):
    rules = parse_grammar(json_schema_to_ebnf(schema))
    validator = jsonschema.Draft202012Validator(schema)
    wrong = [n for n in range(-1100, 5100) if matches(rules, str(n)) != validator.is_valid(n)]
    assert wrong == []


NUMBER_RANGES = [  # (schema, whether every valid candidate must be written: false where bounds move inwards)
    ({"type": "number", "minimum": 0, "maximum": 1000}, True),
    ({"type": "number", "exclusiveMinimum": -3, "exclusiveMaximum": 7}, True),
    ({"type": "number", "exclusiveMinimum": 0}, True),
    ({"type": "number", "maximum": -1, "exclusiveMaximum": -1}, True),
    ({"type": ["number", "null"], "minimum": 5, "maximum": 5}, True),
    ({"type": "number", "minimum": -2.5, "maximum": 12.75}, False),
]
_WHOLES = [*range(0, 20), 98, 99, 100, 101, 999, 1000, 1001, 1099]
NUMBER_TEXTS = [
    sign + f"{whole}{fraction}"
    for whole in _WHOLES
    for fraction in ("", ".5", ".05", ".000001", ".0", ".999999", ".000")
    for sign in ("", "-")
    if not (sign and whole == 0 and fraction in ("", ".0", ".000"))  # "-0" is never written
]


@pytest.mark.parametrize(("schema", "exact"), NUMBER_RANGES)
def test_number_bounds_are_never_crossed(schema, exact):
    rules = parse_grammar(json_schema_to_ebnf(schema))
    validator = jsonschema.Draft202012Validator(schema)
    accepted = {text for text in NUMBER_TEXTS if matches(rules, text)}
    valid = {text for text in NUMBER_TEXTS if validator.is_valid(json.loads(text))}
    assert accepted - valid == set()
    if exact:
        assert valid - accepted == set()
    else:
        assert {str(n) for n in range(-2, 13)} <= accepted


UNSUPPORTED = [
    False,
    {"type": "strin"},
    {"type": "string", "pattern": "^a+$"},
    {"type": "string", "format": "date-time"},
    {"type": "integer", "multipleOf": 3},
    {"type": "array", "uniqueItems": True},
    {"type": "array", "items": [{"type": "integer"}]},
    {"type": "object", "minProperties": 1},
    {"type": "object", "properties": {"a": {}}, "required": ["b"]},
    {"not": {"type": "null"}},
    {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    {"oneOf": [{"type": "object", "properties": {"a": {"type": "integer"}}}, {"type": "object"}]},
    {"allOf": [{"type": "integer"}, {"minimum": 1}]},
    {"type": "object", "anyOf": [{"required": ["a"]}]},
    {"type": "object", "allOf": [{"$ref": "#"}]},
    {"$ref": "https://example.com/schema.json"},
    {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"},
    {"type": "number", "maximum": 1e12},
    {"type": "number", "minimum": float("nan")},
    {"type": "integer", "maximum": 10**40},
    {"type": "integer", "minimum": 5, "maximum": 4},
    {"type": "string", "minLength": 3, "maxLength": 2},
    {"type": "array", "minItems": 3, "prefixItems": [{}], "items": False},
    {"type": "boolean", "enum": ["a", 1]},
    {"enum": ["\ud800"]},
    {"type": "object", "properties": 5},
]


@pytest.mark.parametrize("schema", UNSUPPORTED, ids=lambda schema: json.dumps(schema)[:60])
def test_unsupported_schemas_give_none(schema):
    assert json_schema_to_ebnf(schema) is None


# --- the grammars compile in xgrammar, and work on the demo model --------------------------------------

COMPILED = {
    **{name: schema for name, (schema, _, _) in TABLE.items()},
    **{f"integer {i}": schema for i, schema in enumerate(INTEGER_RANGES)},
    **{f"number {i}": schema for i, (schema, _) in enumerate(NUMBER_RANGES)},
    "any value": True,
    "one of, by type": {
        "oneOf": [{"type": "string", "maxLength": 200}, {"type": "integer"}, {"enum": [[1]]}]
    },
    "typed enum": {"type": "string", "enum": ["a", 1, "b"]},
    "map": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "boolean"}}},
    "long array": {"type": "array", "items": {"type": "null"}, "minItems": 130, "maxItems": 300},
    "root ref": {"type": "object", "properties": {"up": {"allOf": [{"$ref": "#"}]}, "n": {"const": 1}}},
}


@pytest.mark.parametrize("name", COMPILED)
def test_every_document_the_grammar_derives_is_valid(name):
    schema = COMPILED[name]
    rules = parse_grammar(json_schema_to_ebnf(schema))
    validator = jsonschema.Draft202012Validator(schema)
    rng = random.Random(name)
    texts = [sample(rules, rng) for _ in range(300)]
    assert [text for text in texts if not validator.is_valid(json.loads(text))] == []


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    return GrammarChecker(tmp_path_factory.mktemp("probe"))


@pytest.mark.parametrize("name", COMPILED)
def test_grammar_compiles_in_xgrammar(checker, name):
    ebnf = json_schema_to_ebnf(COMPILED[name])
    assert ebnf is not None
    assert checker.check(ov_genai.StructuredOutputConfig(grammar=ebnf)) is None


def test_grammar_compiles_as_a_structural_tag_element(checker):
    tags = ov_genai.StructuredOutputConfig.TagsWithSeparator
    tag = ov_genai.StructuredOutputConfig.Tag(
        "<product>", ov_genai.StructuredOutputConfig.EBNF(json_schema_to_ebnf(PRODUCT)), "</product>"
    )
    assert checker.check(ov_genai.StructuredOutputConfig(structural_tags_config=tags([tag], ";"))) is None


@pytest.fixture(scope="module")
def demo_pipeline():
    from gateway.sources import ensure_demo_model

    model = ensure_demo_model(Path("~/.cache/openarc").expanduser())
    scheduler = ov_genai.SchedulerConfig()
    scheduler.cache_size = 1
    return ov_genai.ContinuousBatchingPipeline(str(model), scheduler, "CPU")


def _failures(
    pipeline: ov_genai.ContinuousBatchingPipeline, constraint: ov_genai.StructuredOutputConfig
) -> list:
    """Generations (greedy, then seven seeds at temperature 0.8) that are not a valid PRODUCT document."""
    # A prompt that does not ask for JSON: the constraint alone has to carry the format.
    messages = [{"role": "user", "content": "Suggest a gift for my mother."}]
    prompt = pipeline.get_tokenizer().apply_chat_template(messages, add_generation_prompt=True)
    configs = []
    for seed in (None, 1, 2, 3, 4, 5, 6, 7):
        config = ov_genai.GenerationConfig(max_new_tokens=150)
        if seed is not None:
            config.do_sample, config.temperature, config.rng_seed = True, 0.8, seed
        config.structured_output_config = constraint
        configs.append(config)
    failures = []
    for result in pipeline.generate([prompt] * len(configs), configs):
        text = result.m_generation_ids[0]
        try:
            jsonschema.validate(json.loads(text), PRODUCT)
        except (ValueError, jsonschema.ValidationError):
            failures.append(text)
    return failures


@pytest.mark.slow
def test_demo_model_writes_valid_documents_under_the_grammar(demo_pipeline):
    """OpenArc's behaviour around xgrammar's whitespace bug: a schema it can express goes to the engine as
    its compact grammar (never xgrammar's converter), and under it the demo model writes valid documents.

    Measured on 2 cores (openvino-genai 2026.4.1): with xgrammar's converter (json_schema) 7 of 8 failed,
    all in whitespace; with the grammar none. Whether upstream still has the bug is not this test's
    business; if it is fixed, json_grammar could go, and this test would still hold.
    """
    lowered = lower(JsonConstraint(json.dumps(PRODUCT)))
    assert lowered.grammar == json_schema_to_ebnf(PRODUCT) and lowered.json_schema is None
    assert _failures(demo_pipeline, build(lowered)) == []
