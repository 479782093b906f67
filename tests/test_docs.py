"""Docs that the code keeps true: the generated configuration reference, and the API page's field tables."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from msgspec import Meta, Struct

from gateway import config_reference
from gateway.config_reference import describe_type, field_docs
from gateway.dialects.messages.wire import CountTokensRequest, MessageCreateRequest
from gateway.dialects.responses.wire import ResponseCreateRequest
from gateway.dialects.tokenize import DetokenizeRequest, TokenizeRequest
from gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_configuration_reference_is_current():
    committed = (DOCS / "configuration.md").read_text()
    generated = config_reference.reference()
    if committed != generated:
        diff = difflib.unified_diff(
            committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm="", n=1
        )
        pytest.fail(
            "docs/configuration.md differs from gateway/config.py; refresh it with\n"
            f"    {config_reference.COMMAND}\n" + "\n".join(list(diff)[:40])
        )


@pytest.mark.parametrize(
    ("annotation", "shown"),
    [
        (Annotated[int, Meta(ge=1)], "int >= 1"),
        (Annotated[float, Meta(gt=0)] | None, "float > 0 | null"),
        (Annotated[int, Meta(ge=0, le=65535)], "0 <= int <= 65535"),
        (Literal["auto", "chat"], '"auto" | "chat"'),
        (list[str], "list of str"),
        (dict[str, str | int], "table of str to str | int"),
    ],
)
def test_types_are_shown_as_a_config_author_reads_them(annotation, shown):
    assert describe_type(annotation) == shown


class Undocumented(Struct, kw_only=True):
    documented: int = 1
    """This one has a docstring."""
    bare: int = 2


def test_a_field_without_a_docstring_stops_the_reference():
    with pytest.raises(ValueError, match=r"Undocumented\.bare has no docstring"):
        field_docs(Undocumented)


def _section(page: str, route: str) -> str:
    """The text under the ``##`` heading that names ``route``, up to the next ``##`` heading."""
    match = re.search(rf"^## `{re.escape(route)}`[^\n]*\n(.*?)(?=^## |\Z)", page, re.MULTILINE | re.DOTALL)
    assert match, f"docs/api.md has no section '## `{route}`'"
    return match.group(1)


@pytest.mark.parametrize(
    ("request_type", "route"),
    [
        (ChatCompletionRequest, "POST /v1/chat/completions"),
        (CompletionRequest, "POST /v1/completions"),
        (EmbeddingRequest, "POST /v1/embeddings"),
        (RerankRequest, "POST /v1/rerank"),
        (ResponseCreateRequest, "POST /v1/responses"),
        (MessageCreateRequest, "POST /v1/messages"),
        (CountTokensRequest, "POST /v1/messages/count_tokens"),
        (TokenizeRequest, "POST /tokenize"),
        (DetokenizeRequest, "POST /tokenize"),
    ],
)
def test_every_request_field_is_in_the_api_reference(request_type, route):
    section = _section((DOCS / "api.md").read_text(), route)
    missing = [name for name in request_type.__struct_fields__ if f"`{name}`" not in section]
    assert not missing, f"docs/api.md, section {route}: say what OpenArc does with {missing}"


def _design_map() -> str:
    readme = (DOCS.parent / "README.md").read_text()
    section = readme[readme.index("## Design\n") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]


def test_the_design_map_is_the_folder_tree():
    """README's design map names every module and package of the code, and nothing that is gone: a
    newcomer finds the room for a change from it. A package's modules may share one line."""
    design = _design_map()
    named = set(re.findall(r"(?<![/\w])([a-z0-9_]+(?:\.py|/))", design))  # not routes (/v1/...)
    root = DOCS.parent
    actual = set()
    for package in ("gateway", "adapters", "bench"):
        actual.add(f"{package}/")
        for path in (root / package).rglob("*.py"):
            if path.name != "__init__.py":
                actual.add(path.name)
        actual.update(
            f"{folder.name}/" for folder in (root / package).rglob("*") if (folder / "__init__.py").is_file()
        )
    actual |= {"tests/", *(p.name for p in (root / "tests").glob("*.py") if not p.name.startswith("test_"))}
    missing = sorted(actual - named)
    assert not missing, f"README's design map does not name: {missing}"
    gone = sorted(named - actual - {"docs/"})
    assert not gone, f"README's design map names what does not exist: {gone}"
