"""What a model's chat template and rendered prompt tell the parser: the output format, and whether
the output starts inside the think block."""

from __future__ import annotations

from ..base import OutputFormat, ReasoningFormat


def detect_output_format(chat_template: str) -> OutputFormat:
    """The output format a model's Jinja chat template implies (tool syntax and think tags)."""
    if "<tool_call>" in chat_template:
        tool_format: str | None = "hermes"
    elif "[TOOL_CALLS]" in chat_template:
        tool_format = "mistral"
    elif "<|python_tag|>" in chat_template or (
        "<|start_header_id|>" in chat_template and '"parameters"' in chat_template
    ):
        tool_format = "llama3_json"
    else:
        tool_format = None
    thinks = "<think>" in chat_template and "</think>" in chat_template
    return OutputFormat(tool_format=tool_format, reasoning=ReasoningFormat() if thinks else None)


def reasoning_opened(prompt_text: str, reasoning: ReasoningFormat | None) -> bool:
    r"""Whether the rendered prompt ends by opening the think block (DeepSeek-R1 and QwQ templates end
    the generation prompt with ``<think>\n``), so the output starts inside it.

    Only the very end counts: a user message that mentions the open tag must not turn the answer into
    reasoning.
    """
    return reasoning is not None and prompt_text.rstrip().endswith(reasoning.open_tag)
