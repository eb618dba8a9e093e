"""``--help``'s list of settings, generated from the schemas: every key with its default and the comment the
schema gives it, so the help can never miss a key or disagree with a default (``${seq2seq_keys:train}`` in a
config's ``hydra.help.template``)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
from typing import Any

FIELD = re.compile(r"^\s+(\w+): [^=]+?(?:= (.*?))?\s*(?:#\s*(.*))?$")
WIDTH = 110


def field_comments(schema: type) -> dict[str, str]:
    """Each field's comment in ``schema``'s source (and its base classes'): the comment-only lines just above
    it, then its trailing comment."""
    comments: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        above: list[str] = []
        for line in inspect.getsource(cls).splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                above.append(stripped.lstrip("# "))
                continue
            match = FIELD.match(line)
            if match and match.group(1) in {f.name for f in dataclasses.fields(cls)}:
                comments[match.group(1)] = " ".join([*above, (match.group(3) or "").strip()]).strip()
            above = []
    return comments


def key_lines(schema: type, prefix: str = "") -> list[str]:
    """``key = default  comment`` for every setting of ``schema``, nested schemas as ``group.key``."""
    lines, groups = [], []
    comments = field_comments(schema)
    for f in dataclasses.fields(schema):
        value = default(f)
        if dataclasses.is_dataclass(value):
            groups.append((f.name, type(value)))
            continue
        head = f"  {prefix}{f.name} = {_show(value)}"
        text = comments.get(f.name, "")
        lines.extend(textwrap.wrap(text, WIDTH, initial_indent=f"{head:<40}", subsequent_indent=" " * 42)
                     if text else [head])
    for name, nested in groups:
        lines.extend(key_lines(nested, f"{prefix}{name}."))
    return lines


def default(f: dataclasses.Field) -> Any:
    """A field's default, without building the schema (whose checks may refuse the defaults alone)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _show(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def register_resolver(schemas: dict[str, type]) -> None:
    """``${seq2seq_keys:NAME}``: the generated list of the settings of ``schemas[NAME]``."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("seq2seq_keys", lambda name: "\n".join(key_lines(schemas[name])), replace=True)
