"""The output parser on recorded model outputs, fed whole, one character at a time, split at every
position and at awkward places: the reassembled content, reasoning and calls must never depend on how
the text was split. Pure unit tests: no model, no OpenVINO."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from adapters.base import JsonConstraint, OutputFormat, ReasoningFormat, TaggedCallsConstraint
from adapters.output_parsing import (
    CallArguments,
    CallStart,
    Content,
    OutputParser,
    Reasoning,
    detect_output_format,
    forced_call_constraint,
    reasoning_opened,
)

HERMES = OutputFormat(tool_format="hermes")
LLAMA3 = OutputFormat(tool_format="llama3_json")
MISTRAL = OutputFormat(tool_format="mistral")
QWEN3 = OutputFormat(tool_format="hermes", reasoning=ReasoningFormat())
THINK_ONLY = OutputFormat(reasoning=ReasoningFormat())


def run(pieces, output_format=HERMES, parse_tools=True, reasoning_open=False):
    """Feed ``pieces``; return (content, reasoning, [(name, arguments object)]), checking the stream's
    invariants on the way: no empty pieces, calls numbered in order, arguments only for the open call."""
    parser = OutputParser(output_format, parse_tools, reasoning_open)
    out = [piece for text in pieces for piece in parser.feed(text)] + parser.finish()
    content, reasoning, calls = "", "", []
    for piece in out:
        match piece:
            case Content(text):
                assert text
                content += text
            case Reasoning(text):
                assert text
                assert not content and not calls, "reasoning after the answer began"
                reasoning += text
            case CallStart(call, name):
                assert call == len(calls)
                calls.append([name, ""])
            case CallArguments(call, text):
                assert text and call == len(calls) - 1
                calls[-1][1] += text
    assert parser.made_calls == bool(calls)
    decoded = [(name, json.loads(arguments)) for name, arguments in calls]
    assert all(isinstance(arguments, dict) for _, arguments in decoded)
    return content, reasoning, decoded


def run_lenient(pieces, output_format, reasoning_open):
    """Like ``run``, but arguments stay text: a call cut short or malformed after it started keeps
    whatever arguments text it had."""
    parser = OutputParser(output_format, True, reasoning_open)
    content, reasoning, calls = "", "", []
    for piece in [piece for text in pieces for piece in parser.feed(text)] + parser.finish():
        match piece:
            case Content(text):
                content += text
            case Reasoning(text):
                reasoning += text
            case CallStart(call, name):
                calls.append([call, name, ""])
            case CallArguments(call, text):
                assert calls[-1][0] == call
                calls[-1][2] += text
    return content, reasoning, calls


def splittings(text, awkward=()):
    """Every way this suite splits ``text``: whole, per character, at each single position, and at
    each awkward substring (split just inside it, and around it)."""
    yield "whole", [text]
    yield "chars", list(text)
    for i in range(1, len(text)):
        yield f"at {i}", [text[:i], text[i:]]
    for marker in awkward:
        i = text.index(marker)
        cuts = sorted({i, i + 1, i + len(marker) // 2, i + len(marker) - 1, i + len(marker)} - {0, len(text)})
        yield f"around {marker!r}", [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


WEATHER = {"location": "Paris, France", "unit": "celsius"}

# (id, output format, reasoning_open, text, awkward substrings, expected (content, reasoning, calls))
RECORDED = [
    (
        "qwen2.5 one call",
        HERMES,
        False,
        '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris, France", '
        '"unit": "celsius"}}\n</tool_call>',
        ("<tool_call>", "</tool_call>", '"arguments"', "France"),
        ("", "", [("get_current_weather", WEATHER)]),
    ),
    (
        "qwen2.5 content then two calls",
        HERMES,
        False,
        "I'll check the weather in both cities.\n"
        '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Tokyo"}}\n</tool_call>',
        ("cities.\n<", "</tool_call>\n<tool_call>", "}}\n</"),
        (
            "I'll check the weather in both cities.\n",
            "",
            [("get_current_weather", {"location": "Paris"}), ("get_current_weather", {"location": "Tokyo"})],
        ),
    ),
    (
        "hermes string full of traps",
        HERMES,
        False,
        '<tool_call>\n{"name": "write_file", "arguments": {"path": "a.md", "text": "use {braces}, '
        '\\"quotes\\", \\\\ and </tool_call> freely"}}\n</tool_call>\nSaved.',
        ("{braces}", '\\"quotes', "\\\\", "</tool_call> freely", '"}}'),
        (
            "Saved.",
            "",
            [("write_file", {"path": "a.md", "text": 'use {braces}, "quotes", \\ and </tool_call> freely'})],
        ),
    ),
    (
        "llama3.1 json",
        LLAMA3,
        False,
        '{"name": "get_current_weather", "parameters": {"location": "Paris, France", "unit": "celsius"}}',
        ('{"name', '"parameters"', "}}"),
        ("", "", [("get_current_weather", WEATHER)]),
    ),
    (
        "llama3.1 python_tag, two calls",
        LLAMA3,
        False,
        '<|python_tag|>{"name": "get_current_weather", "parameters": {"location": "Paris"}}; '
        '{"name": "get_time", "parameters": {}}',
        ("<|python_tag|>", "}; {"),
        ("", "", [("get_current_weather", {"location": "Paris"}), ("get_time", {})]),
    ),
    (
        "mistral v3 array",
        MISTRAL,
        False,
        '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, France", '
        '"unit": "celsius"}}, {"name": "get_time", "arguments": {"tz": "CET"}, "id": "a1b2c3d4e"}]',
        ("[TOOL_CALLS]", "}}, {", '"id"', "}]"),
        ("", "", [("get_current_weather", WEATHER), ("get_time", {"tz": "CET"})]),
    ),
    (
        "mistral [ARGS] form, two calls",
        MISTRAL,
        False,
        'Let me check.[TOOL_CALLS]get_current_weather[ARGS]{"location": "Paris, France", "unit": '
        '"celsius"}[TOOL_CALLS]get_time[ARGS]{"tz": "CET {x}"}',
        ("[TOOL_CALLS]", "[ARGS]", "}[TOOL", "{x}"),
        ("Let me check.", "", [("get_current_weather", WEATHER), ("get_time", {"tz": "CET {x}"})]),
    ),
    (
        "deepseek-r1 style (think opened by the prompt) then a call",
        QWEN3,
        True,
        "Okay, the user wants the weather in Paris. I should call get_current_weather.\n</think>\n\n"
        '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris, France", '
        '"unit": "celsius"}}\n</tool_call>',
        ("</think>", "\n\n<tool_call>"),
        (
            "",
            "Okay, the user wants the weather in Paris. I should call get_current_weather.",
            [("get_current_weather", WEATHER)],
        ),
    ),
    (
        "qwen3 think block, content, then a call",
        QWEN3,
        False,
        "<think>\nThe user asks about Paris. </thin is not a tag; I'll use the tool.\n</think>\n\n"
        'Checking now.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": '
        '"Paris, France", "unit": "celsius"}}\n</tool_call>',
        ("<think>", "</thin ", "</think>", "now.\n<tool"),
        (
            "Checking now.\n",
            "The user asks about Paris. </thin is not a tag; I'll use the tool.",
            [("get_current_weather", WEATHER)],
        ),
    ),
]


@pytest.mark.parametrize(
    ("output_format", "opened", "text", "awkward", "expected"),
    [r[1:] for r in RECORDED],
    ids=[r[0] for r in RECORDED],
)
def test_recorded_outputs_parse_the_same_however_split(output_format, opened, text, awkward, expected):
    for how, pieces in splittings(text, awkward):
        assert run(pieces, output_format, reasoning_open=opened) == expected, how


# (id, output format, text): outputs that must come back as content, exactly as written.
NOT_CALLS = [
    ("looks like a tag", HERMES, "Some <tools are better than <tool_call others."),
    ("ends inside a tag", HERMES, "Almost a call <tool_ca"),
    ("tag then prose", HERMES, "Use the <tool_call> tag to call a tool."),
    ("tag then not json", HERMES, "<tool_call>\nget_weather(city='Paris')\n</tool_call>"),
    ("no name", HERMES, '<tool_call>\n{"arguments": {"city": "Paris"}}\n</tool_call>'),
    ("name not a string", HERMES, '<tool_call>\n{"name": 7, "arguments": {}}\n</tool_call>'),
    ("unknown key", HERMES, '<tool_call>\n{"name": "f", "colour": "red"}\n</tool_call>'),
    ("arguments not an object", HERMES, '<tool_call>\n{"name": "f", "arguments": [1, 2]}\n</tool_call>'),
    ("bad held arguments", HERMES, '<tool_call>\n{"arguments": {"a": 1,}, "name": "f"}\n</tool_call>'),
    ("cut off before the name", HERMES, '<tool_call>\n{"name": "get_current_wea'),
    ("cut off after the name", HERMES, 'Text <tool_call>\n{"name": "f", "argum'),
    ("missing comma", HERMES, '<tool_call>\n{"name": "f" "arguments": {}}\n</tool_call> end'),
    ("json answer with a name key", LLAMA3, '{"name": "Ada Lovelace", "born": 1815}'),
    ("json not at the start", LLAMA3, 'Here: {"name": "f", "parameters": {}}'),
    ("python_tag with code", LLAMA3, "<|python_tag|>brave_search.call(query='Paris')"),
    ("plain llama answer", LLAMA3, "  The weather in Paris is mild."),
    ("mistral tag then prose", MISTRAL, "[TOOL_CALLS] is the token Mistral uses."),
    ("mistral broken array", MISTRAL, '[TOOL_CALLS][{"nom": "f"}]'),
    ("mistral name cut off", MISTRAL, "[TOOL_CALLS]get_weat"),
]


@pytest.mark.parametrize(("output_format", "text"), [c[1:] for c in NOT_CALLS], ids=[c[0] for c in NOT_CALLS])
def test_text_that_is_not_a_call_is_content_unchanged(output_format, text):
    for how, pieces in splittings(text):
        assert run(pieces, output_format) == (text, "", []), how


HERMES_CALL = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'


@pytest.mark.parametrize(
    ("output_format", "parse_tools"),
    [(HERMES, False), (OutputFormat(), True), (LLAMA3, False), (MISTRAL, False)],
)
@pytest.mark.parametrize(
    "text", [HERMES_CALL, '[TOOL_CALLS]f[ARGS]{"a": 1}', '{"name": "f", "parameters": {}}']
)
def test_without_tool_parsing_text_is_unchanged(output_format, parse_tools, text):
    for how, pieces in splittings(text):
        assert run(pieces, output_format, parse_tools) == (text, "", []), how


def test_without_a_reasoning_format_think_tags_stay_in_content():
    text = "<think>hmm</think>Answer."
    assert run(list(text), OutputFormat()) == (text, "", [])


@pytest.mark.parametrize(
    ("text", "opened", "expected"),
    [
        ("<think>\nStill thinking when cut", False, ("", "Still thinking when cut", [])),
        ("Still thinking when cut </thi", True, ("", "Still thinking when cut </thi", [])),
        ("Thought.\n</think>\n\nAnswer.\n", True, ("Answer.\n", "Thought.", [])),
        ("<think>\nRepeated tag.</think>Answer.", True, ("Answer.", "Repeated tag.", [])),
        (" <thi", True, ("", "<thi", [])),
        ("\n<think>\n\n</think>\n\nAnswer.", False, ("Answer.", "", [])),
        ("  Answer, no block.", False, ("  Answer, no block.", "", [])),
        ("Answer first <think>x</think>", False, ("Answer first <think>x</think>", "", [])),
        ("<thinking is content", False, ("<thinking is content", "", [])),
    ],
)
def test_reasoning_block(text, opened, expected):
    for how, pieces in splittings(text):
        assert run(pieces, THINK_ONLY, reasoning_open=opened) == expected, how


def test_tool_calls_are_not_looked_for_inside_reasoning():
    text = f"<think>I could write {HERMES_CALL}</think>Done."
    assert run([text], QWEN3) == ("Done.", f"I could write {HERMES_CALL}", [])


@pytest.mark.parametrize(
    ("text", "expected_calls", "content"),
    [
        ('<tool_call>\n{"name": "f", "parameters": {"a": 1}}\n</tool_call>', [("f", {"a": 1})], ""),
        ('<tool_call>{"name": "f", "arguments": "{\\"a\\": \\"}\\"}"}</tool_call>', [("f", {"a": "}"})], ""),
        ('<tool_call>{"arguments": {"a": [null, {}]}, "name": "f"}', [("f", {"a": [None, {}]})], ""),
        ('<tool_call>{"name": "f"}</tool_call>', [("f", {})], ""),
        ('<tool_call>{"type": "function", "name": "f", "arguments": {}}</tool_call>', [("f", {})], ""),
        ('<tool_call>{"name": "f"}\n</tool_call>\n\n  Then text.', [("f", {})], "Then text."),
        ('<tool_call>{"name": "f", "arguments": {}}}</tool_call>', [("f", {})], "}</tool_call>"),
        ('<tool_call>{"name": "f", "arguments": {}}<tool_call>{"name": "g"}', [("f", {}), ("g", {})], ""),
        ('<tool_call><tool_call>{"name": "g"}</tool_call>', [("g", {})], "<tool_call>"),
    ],
)  # fmt: skip
def test_hermes_variants(text, expected_calls, content):
    for how, pieces in splittings(text):
        assert run(pieces) == (content, "", expected_calls), how


FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<tool", "\n", " ", '{"name": "f"', "}", "{", '"', "\\", ",", ":",
    '{"name": "g", "arguments": {"a": "}\\"x"}}', '"arguments": {"b": [1, 2]}', '"parameters": {}',
    '"name": "h"', "null", "12", "hello", "[TOOL_CALLS]", "[ARGS]", "get", "[", "]", "<|python_tag|>", ";",
    "<think>", "</think>", "</thi",
]  # fmt: skip
FORMATS = [HERMES, LLAMA3, MISTRAL, QWEN3, THINK_ONLY]


@pytest.mark.parametrize("seed", range(4))
def test_random_texts_parse_the_same_however_split(seed):
    """Texts glued from tags, half tags and JSON bits: the result never depends on the splitting, and
    an output without calls or a think block comes back exactly as written."""
    rng = random.Random(seed)
    for _ in range(400):
        text = "".join(rng.choices(FRAGMENTS, k=rng.randint(1, 12)))
        output_format, opened = rng.choice(FORMATS), rng.random() < 0.3
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, 6)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        whole = run_lenient([text], output_format, opened)
        assert run_lenient(list(text), output_format, opened) == whole, text
        assert run_lenient(pieces, output_format, opened) == whole, pieces
        if output_format.reasoning is None and not whole[2]:
            assert whole[0] == text


def test_llama3_text_after_calls_is_content():
    text = '{"name": "f", "parameters": {"q": "x;y"}}\nI called f.'
    for how, pieces in splittings(text):
        assert run(pieces, LLAMA3) == ("I called f.", "", [("f", {"q": "x;y"})]), how


def test_call_streams_name_first_then_arguments_as_they_arrive():
    parser = OutputParser(HERMES, parse_tools=True)
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    fed = [(char, parser.feed(char)) for char in text]
    start = next(i for i, (_, out) in enumerate(fed) if out)
    assert fed[start] == ("{", [CallStart(0, "get_weather"), CallArguments(0, "{")])
    arguments = [p.text for _, out in fed for p in out if isinstance(p, CallArguments)]
    assert len(arguments) == len('{"city": "Paris"}') and "".join(arguments) == '{"city": "Paris"}'
    assert parser.finish() == [] and parser.made_calls


def test_arguments_before_the_name_are_held_until_the_call_closes():
    parser = OutputParser(HERMES, parse_tools=True)
    text = '<tool_call>{"arguments": {"a": 1}, "name": "f"}'
    assert [parser.feed(char) for char in text[:-1]] == [[]] * (len(text) - 1)
    assert parser.feed("}") == [CallStart(0, "f"), CallArguments(0, '{"a": 1}')]


def test_content_is_held_back_only_while_it_could_be_a_tag():
    parser = OutputParser(HERMES, parse_tools=True)
    assert parser.feed("Hello <tool") == [Content("Hello ")]
    assert parser.feed("s are") == [Content("<tools are")]
    assert parser.feed(" fine<") == [Content(" fine")]
    assert parser.finish() == [Content("<")]
    assert not parser.made_calls


def test_a_started_call_that_is_cut_off_keeps_what_was_emitted():
    # As vLLM does: the name and the argument text already sent stay; the call is closed there.
    parser = OutputParser(HERMES, parse_tools=True)
    out = parser.feed('Sure. <tool_call>\n{"name": "f", "arguments": {"a": ') + parser.finish()
    assert out == [Content("Sure. "), CallStart(0, "f"), CallArguments(0, '{"a": ')]
    assert parser.made_calls


def test_mistral_call_cut_off_right_after_args_tag_gets_empty_arguments():
    parser = OutputParser(MISTRAL, parse_tools=True)
    assert parser.feed("[TOOL_CALLS]f[ARGS]") + parser.finish() == [CallStart(0, "f"), CallArguments(0, "{}")]


def test_unknown_tool_format_is_refused():
    with pytest.raises(ValueError, match="unknown tool call format"):
        OutputParser(OutputFormat(tool_format="pythonic"), parse_tools=True)


@pytest.mark.parametrize(
    ("template", "tool_format", "thinks"),
    [
        ("{%- if tools %}<tools>{{ tools }}</tools><tool_call>\\n{{ c }}\\n</tool_call>", "hermes", False),
        ("{{ '<think>\\n' }}{% if t %}<tool_call>{% endif %}{{ c.split('</think>')[1] }}", "hermes", True),
        ("{{- '[AVAILABLE_TOOLS]' }}{{ tools }}{{- '[TOOL_CALLS]' + calls }}", "mistral", False),
        ("<|start_header_id|>ipython<|end_header_id|>{{ '<|python_tag|>' + call }}", "llama3_json", False),
        ('<|start_header_id|>user<|end_header_id|>Respond as {"name": function name, "parameters": dict}',
         "llama3_json", False),
        ("<｜Assistant｜><think>\\n{{ content.split('</think>')[-1] }}", None, True),
        ("{% for m in msgs %}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>{% endfor %}", None, False),
    ],
)  # fmt: skip
def test_detect_output_format(template, tool_format, thinks):
    assert detect_output_format(template) == OutputFormat(tool_format, ReasoningFormat() if thinks else None)


@pytest.mark.parametrize(
    ("prompt", "reasoning", "expected"),
    [
        ("<|im_start|>assistant\n<think>\n", ReasoningFormat(), True),
        ("<｜Assistant｜><think>", ReasoningFormat(), True),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", ReasoningFormat(), False),
        ("user: what does <think> do?<|im_start|>assistant\n", ReasoningFormat(), False),
        ("<|im_start|>assistant\n<think>\n", None, False),
        ("[THINK]", ReasoningFormat("[THINK]", "[/THINK]"), True),
    ],
)
def test_reasoning_opened(prompt, reasoning, expected):
    assert reasoning_opened(prompt, reasoning) is expected


WEIRD = 'we"ird\\name'
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather now.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": WEIRD}},
]  # fmt: skip


def _validator(schema_text):
    # jsonschema validates against a malformed schema without complaint; check it first.
    schema = json.loads(schema_text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_hermes_constraint_reads_back_as_calls():
    constraint = forced_call_constraint(None, TOOLS, None, parallel=True)
    assert isinstance(constraint, TaggedCallsConstraint)
    assert (constraint.separator, constraint.single) == ("\n", False)
    weather, weird = constraint.calls
    assert weird.begin == '<tool_call>\n{"name": "we\\"ird\\\\name", "arguments": '
    assert json.loads(weird.schema) == {"type": "object", "properties": {}}
    assert _validator(weather.schema).is_valid({"city": "Paris"})
    assert not _validator(weather.schema).is_valid({})
    text = "\n".join([weather.begin + '{"city": "Paris"}' + weather.end, weird.begin + "{}" + weird.end])
    assert run(list(text)) == ("", "", [("get_weather", {"city": "Paris"}), (WEIRD, {})])


def test_named_single_hermes_constraint():
    constraint = forced_call_constraint("hermes", TOOLS, "get_weather", parallel=False)
    assert constraint.single and [c.begin for c in constraint.calls] == [
        '<tool_call>\n{"name": "get_weather", "arguments": '
    ]


def test_llama3_constraint_reads_back_as_a_call():
    constraint = forced_call_constraint("llama3_json", TOOLS, None, parallel=True)
    assert isinstance(constraint, JsonConstraint) and constraint.prefix == ""
    validator = _validator(constraint.schema)
    call = {"name": "get_weather", "parameters": {"city": "Paris"}}
    assert validator.is_valid(call) and validator.is_valid({"name": WEIRD, "parameters": {}})
    assert not validator.is_valid({"name": "other", "parameters": {}})
    assert not validator.is_valid({**call, "extra": 1})
    assert run([json.dumps(call)], LLAMA3) == ("", "", [("get_weather", {"city": "Paris"})])


@pytest.mark.parametrize("parallel", [False, True])
def test_mistral_constraint_reads_back_as_calls(parallel):
    constraint = forced_call_constraint("mistral", TOOLS, None, parallel=parallel)
    assert isinstance(constraint, JsonConstraint) and constraint.prefix == "[TOOL_CALLS]"
    validator = _validator(constraint.schema)
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": WEIRD, "arguments": {}}]
    assert not validator.is_valid([])
    assert validator.is_valid(calls[:1])
    assert validator.is_valid(calls) is parallel
    text = constraint.prefix + json.dumps(calls, ensure_ascii=False)
    expected = [("get_weather", {"city": "Paris"}), (WEIRD, {})]
    assert run(list(text), MISTRAL) == ("", "", expected)


def test_named_constraint_keeps_only_that_function():
    constraint = forced_call_constraint("llama3_json", TOOLS, WEIRD, parallel=False)
    assert [s["properties"]["name"]["const"] for s in json.loads(constraint.schema)["anyOf"]] == [WEIRD]


@pytest.mark.parametrize(("tool_format", "name"), [("hermes", "missing"), ("pythonic", None)])
def test_constraint_refuses_what_it_cannot_force(tool_format, name):
    with pytest.raises(ValueError):
        forced_call_constraint(tool_format, TOOLS, name, parallel=False)
