"""The grammar checker compiles constraints on a real openvino-genai probe pipeline (a tiny model it writes).

Valid constraints pass, ones xgrammar rejects come back as one readable line, the probe survives the
failures that break a pipeline, and the verdict cache stays within its bound.
"""

from __future__ import annotations

import json

import openvino_genai as ov_genai
import pytest

from adapters.openvino.worker.grammar_check import (
    PROBE_FILE,
    GrammarChecker,
    probe_model_bytes,
    write_probe_model,
)

S = ov_genai.StructuredOutputConfig

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["street"],
        },
    },
    "required": ["name", "address"],
}
ENUMS_AND_ARRAYS = {
    "type": "object",
    "properties": {
        "colour": {"enum": ["red", "green", "blue"]},
        "scores": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 4},
        "pairs": {"type": "array", "items": {"type": "array", "items": {"type": "boolean"}}},
    },
}
NODE = {"type": "object", "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}}}
DEFS_AND_REFS = {
    "$defs": {"node": NODE},
    "type": "object",
    "properties": {"head": {"$ref": "#/$defs/node"}, "kind": {"type": "string", "enum": ["list"]}},
    "required": ["head"],
}


def call_tags(*schemas: str) -> S.TagsWithSeparator:
    return S.TagsWithSeparator([S.Tag("<call>", S.JSONSchema(schema), "</call>") for schema in schemas], ";")


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    return GrammarChecker(tmp_path_factory.mktemp("probe"))


@pytest.mark.parametrize(
    "config",
    [
        S(json_schema=json.dumps(PERSON)),
        S(json_schema=json.dumps(ENUMS_AND_ARRAYS)),
        S(json_schema=json.dumps(DEFS_AND_REFS)),
        S(regex=r"[A-Z][a-z]+ \d{1,3}(, [A-Z][a-z]+ \d{1,3})*"),
        S(grammar='root ::= "yes" | "no"'),
        S(structural_tags_config=call_tags(json.dumps(PERSON), '{"type": "object"}')),
    ],
    ids=["nested-objects", "enums-arrays", "defs-refs", "regex", "ebnf", "structural-tag"],
)
def test_valid_constraints_compile(checker, config):
    assert checker.check(config) is None


# xgrammar refuses an open-ended element (tags repeated any number of times) before the end of a sequence.
UNLIMITED_IN_MIDDLE = S.ConstString("<calls>") + call_tags('{"type": "object"}') + S.ConstString("</calls>")
INVALID = [
    (S(json_schema='{"type": "nonsense"}'), 'Unsupported type "nonsense"'),
    (S(json_schema='{"type": '), "Failed to parse JSON"),
    (S(regex="(abc"), "The parenthesis is not closed"),
    (S(regex="a{3,1}"), "Lower bound is larger than upper bound"),
    (S(grammar='root ::= "a" |'), "EBNF parser error"),
    (S(structural_tags_config=UNLIMITED_IN_MIDDLE), "Only the last element in a sequence can be unlimited"),
    (S(structural_tags_config=call_tags('{"type": "nonsense"}')), 'Unsupported type "nonsense"'),
    (S(), "Only one of json, regex, grammar"),  # refused by add_request, before any compile
]


@pytest.mark.parametrize(("config", "expected"), INVALID, ids=[case[1] for case in INVALID])
def test_invalid_constraints_give_one_readable_line(checker, config, expected):
    reason = checker.check(config)
    assert reason is not None and expected in reason
    assert "\n" not in reason and ".cc:" not in reason and ".cpp:" not in reason and len(reason) <= 300


def test_probe_is_rebuilt_after_a_failed_compile_and_still_serves(checker):
    builds = checker.builds
    assert checker.check(S(json_schema='{"type": "nothing-at-all"}')) is not None
    assert checker.builds == builds + 1
    assert checker.check(S(json_schema=json.dumps({**PERSON, "title": "after a failure"}))) is None


def test_refusal_before_compiling_keeps_the_probe(checker):
    builds = checker.builds
    assert checker.check(S()) is not None
    assert checker.builds == builds
    assert checker.check(S(regex="[0-9]+ apples")) is None


def test_failures_are_cached_so_a_repeated_bad_schema_costs_no_rebuild(checker):
    bad = S(json_schema='{"type": "repeated-nonsense"}')
    first = checker.check(bad)
    builds = checker.builds
    assert checker.check(bad) == first
    assert checker.builds == builds


def test_long_reasons_are_cut(checker):
    reason = checker.check(S(json_schema='{"type": ' + '"x"' * 500))
    assert reason is not None and len(reason) == 300 and reason.endswith("…")


def test_verdict_cache_is_a_bounded_lru_keyed_by_the_callers_key(tmp_path):
    small = GrammarChecker(tmp_path, cache_entries=10)
    for i in range(50):
        schema = json.dumps({"type": "integer", "minimum": i})
        assert small.check(S(json_schema=schema), key=f"int>={i}") is None
    assert small.cache_size == 10
    # A remembered key answers without compiling: the bad schema given under it is never looked at.
    nonsense = S(json_schema='{"type": "nonsense"}')
    assert small.check(nonsense, key="int>=49") is None
    # The least recently used keys were dropped, so this one compiles what it is given now.
    assert small.check(nonsense, key="int>=0") is not None
    assert small.cache_size == 10


def test_structural_tags_without_a_key_are_not_cached(checker):
    size = checker.cache_size
    assert checker.check(S(structural_tags_config=call_tags('{"type": "string"}'))) is None
    assert checker.cache_size == size


def test_probe_is_recycled_after_n_compiles(tmp_path):
    recycled = GrammarChecker(tmp_path, cache_entries=0, recycle_after=3)
    for i in range(7):
        assert recycled.check(S(regex=f"[a-z]{{{i + 1}}}")) is None
    assert recycled.builds == 1 + 2


def test_probe_model_is_written_once_and_replaced_when_it_differs(tmp_path):
    path = write_probe_model(tmp_path)
    assert path == tmp_path / PROBE_FILE and path.read_bytes() == probe_model_bytes()
    written = path.stat().st_mtime_ns
    assert write_probe_model(tmp_path) == path and path.stat().st_mtime_ns == written
    path.write_bytes(b"GGUF truncated")
    write_probe_model(tmp_path)
    assert path.read_bytes() == probe_model_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [PROBE_FILE]
