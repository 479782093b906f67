"""The configuration reference (``docs/configuration.md``), generated from the config schema itself.

Names, types and defaults come from the msgspec Structs in ``config.py``; descriptions come from the
docstring under each field, read from the source with ``ast`` because msgspec keeps no field docs. The
page therefore cannot drift from the code: ``tests/test_docs.py`` regenerates it and compares.

    python -m gateway.config_reference > docs/configuration.md
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import NODEFAULT, Meta, Struct

from .config import ServerConfig

COMMAND = "python -m gateway.config_reference > docs/configuration.md"
_WIDTH = 105

_INTRO = f"""\
# Configuration reference

<!-- Generated from gateway/config.py by `{COMMAND}`.
Edit the field docstrings there, not this page: tests/test_docs.py fails when the two differ. -->

`openarc serve --config FILE` reads a TOML file, or JSON when the name ends in `.json`. Command-line flags
override the file's top-level keys (`openarc serve --help` lists them: `--port` for `port`, and so on),
`--model` adds models, `--device` and `--inference-precision` set their device and precision, and API
keys from `--api-key`, `--api-key-file` and `OPENARC_API_KEY` are added to the file's. Every value is
checked once, at start-up: an unknown key (a typo) or a value out of range stops the server with one
line naming it. `POST /admin/models` takes one `[[models]]` entry, as JSON.

Types are shown as written in the file: `int >= 1` is an integer of at least 1, `"a" | "b"` one of those
strings, `null` the absence of a value. TOML has no `null`: leave such a key out to keep its default
(only a JSON file can set `null` where the default is something else)."""


@dataclass(frozen=True)
class Section:
    """One Struct of the schema and where its keys go in a config file."""

    struct: type[Struct]
    where: str
    """The TOML table the keys belong to: ``""`` for the top level, ``[[models]]``, ``[models.scheduler]``."""


def sections(root: type[Struct] = ServerConfig) -> Iterator[Section]:
    """``root`` and every Struct reachable from its fields, depth first, in declaration order."""
    yield from _walk(root, "", ())


def _walk(struct: type[Struct], where: str, path: tuple[str, ...]) -> Iterator[Section]:
    yield Section(struct, where)
    for field in msgspec.structs.fields(struct):
        inner, is_list = _nested_struct(field.type)
        if inner is not None:
            dotted = ".".join((*path, field.name))
            yield from _walk(inner, f"[[{dotted}]]" if is_list else f"[{dotted}]", (*path, field.name))


def _nested_struct(tp: Any) -> tuple[type[Struct] | None, bool]:
    """The Struct a field holds (directly or as list items), and whether it is a list of them."""
    if _is_struct(tp):
        return tp, False
    if typing.get_origin(tp) is list and _is_struct(typing.get_args(tp)[0]):
        return typing.get_args(tp)[0], True
    return None, False


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Struct)


def field_docs(struct: type[Struct]) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body), in declaration order.

    Raises:
        ValueError: a field has no docstring, or the source and the Struct disagree on the fields.
    """
    tree = ast.parse(Path(inspect.getfile(struct)).read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == struct.__name__)
    docs: dict[str, str] = {}
    body = node.body
    for statement, following in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        name = statement.target.id
        if not (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            raise ValueError(f"{struct.__name__}.{name} has no docstring (a string literal under the field)")
        docs[name] = inspect.cleandoc(following.value.value)
    if list(docs) != list(struct.__struct_fields__):
        raise ValueError(f"{struct.__name__}: fields in the source {list(docs)} differ from the Struct's")
    return docs


def describe_type(tp: Any) -> str:
    """A field's type as a config file author reads it: ``int >= 1``, ``"auto" | "chat"``, ``str | null``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _constrained(describe_type(args[0]), [a for a in args[1:] if isinstance(a, Meta)])
    if origin is Literal:
        return " | ".join(msgspec.json.encode(value).decode() for value in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe_type(arg) for arg in args)
    if origin is list:
        return f"list of {describe_type(args[0])}"
    if origin is dict:
        return f"table of {describe_type(args[0])} to {describe_type(args[1])}"
    if tp is type(None):
        return "null"
    if _is_struct(tp):
        return "table"
    return tp.__name__


def _constrained(base: str, metas: list[Meta]) -> str:
    """``int >= 1``, ``float > 0``, ``0 <= int <= 65535``: the bounds of ``Meta`` around the type."""
    found = {
        key: getattr(m, key) for m in metas for key in ("ge", "gt", "le", "lt") if getattr(m, key) is not None
    }
    lower = [(op, found[key]) for key, op in (("ge", ">="), ("gt", ">")) if key in found]
    upper = [(op, found[key]) for key, op in (("le", "<="), ("lt", "<")) if key in found]
    if lower and upper:
        (low_op, low), (high_op, high) = lower[0], upper[0]
        return f"{low} {_MIRRORED[low_op]} {base} {high_op} {high}"
    return " ".join([base, *(f"{op} {bound}" for op, bound in lower + upper)])


_MIRRORED = {">=": "<=", ">": "<"}


def describe_default(field: msgspec.structs.FieldInfo) -> str | None:
    """The default as it would be written in the file (``None`` if the key is required)."""
    if field.default is NODEFAULT and field.default_factory is NODEFAULT:
        return None
    value = field.default_factory() if field.default is NODEFAULT else field.default
    return f"`{msgspec.json.encode(value).decode()}`"


def _markdown(docstring: str) -> str:
    """A docstring as a Markdown paragraph: ``code`` in single backticks, Python's ``None`` as the file's
    ``null``, rewrapped to the width of the other docs."""
    text = re.sub(r"``(.+?)``", r"`\1`", " ".join(docstring.split())).replace("`None`", "`null`")
    return textwrap.fill(text, _WIDTH, break_long_words=False, break_on_hyphens=False)


def _section_heading(section: Section) -> str:
    name = section.struct.__name__
    if not section.where:
        return f"## Top level ({name})"
    return f"## `{section.where}` ({name})"


def _anchor(struct: type[Struct]) -> str:
    section = next(s for s in sections() if s.struct is struct)
    return re.sub(r"[^a-z0-9 _-]", "", _section_heading(section)[3:].lower()).replace(" ", "-")


def reference() -> str:
    """The whole configuration reference, as Markdown."""
    parts = [_INTRO]
    for section in sections():
        docs = field_docs(section.struct)
        parts.append(_section_heading(section))
        parts.append(_markdown(inspect.getdoc(section.struct) or ""))
        for field in msgspec.structs.fields(section.struct):
            parts.append(f"### `{field.name}`")
            parts.append(_type_line(field))
            parts.append(_markdown(docs[field.name]))
    return "\n\n".join(parts) + "\n"


def _type_line(field: msgspec.structs.FieldInfo) -> str:
    """``int >= 1``, default ``16``; a nested Struct is named with a link to its section."""
    nested, is_list = _nested_struct(field.type)
    if nested is None:
        kind = f"`{describe_type(field.type)}`"
    else:
        link = f"[{nested.__name__}](#{_anchor(nested)})"
        # A nested table's default is its own keys' defaults, documented in its section.
        return f"a list of {link} tables, default `[]`" if is_list else f"a {link} table"
    default = describe_default(field)
    return f"{kind}, required" if default is None else f"{kind}, default {default}"


def main() -> int:
    """Print the reference to stdout."""
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
