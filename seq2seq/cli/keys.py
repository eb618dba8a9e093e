"""Every setting a command line names must exist in the schema: a typo fails, naming the nearest key.

Hydra refuses ``train.max_step=5`` but suggests ``+train.max_step=5``, which it then adds to the config
and OmegaConf drops when it builds the dataclasses: the typo would be a silent no-op. So the keys are
checked twice: :func:`check_overrides` before Hydra parses the command line (for a message with the
nearest valid key instead of Hydra's hint), and :func:`check_keys` on the composed config, which catches
a key however it got there (``+key``, ``++key``, a YAML file).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any, get_type_hints

from seq2seq.errors import ConfigError


def schema_keys(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of a dataclass schema, nested dataclasses included (``train``, ``train.max_steps``)."""
    keys = []
    hints = get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = prefix + f.name
        keys.append(key)
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(schema_keys(hints[f.name], key + "."))
    return keys


def _nearest(key: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if not match:  # compare the last part alone (``train.max_step`` vs ``max_steps``)
        tails = {k.rsplit(".", 1)[-1]: k for k in valid if k.count(".") == key.count(".")}
        near = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(tails), n=1, cutoff=0.6)
        match = [tails[near[0]]] if near else []
    return f"; did you mean {match[0]}?" if match else ""


def unknown_key_error(key: str, valid: Iterable[str], command: str) -> ConfigError:
    return ConfigError(f"unknown setting {key!r}{_nearest(key, valid)} ({command} --help lists the settings; "
                       "a leading + does not make a new setting valid)")


def check_keys(cfg: Mapping[str, Any], schema: type, command: str = "seq2seq-train") -> None:
    """Raise for the first key of the composed ``cfg`` (hydra's own node excluded) that ``schema`` lacks."""
    valid = set(schema_keys(schema))

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name in node:
            key = prefix + str(name)
            if key not in valid:
                raise unknown_key_error(key, valid, command)
            child = node[name]
            if isinstance(child, Mapping) and any(k.startswith(key + ".") for k in valid):
                walk(child, key + ".")

    walk({k: v for k, v in cfg.items() if k != "hydra"}, "")


def check_overrides(args: Iterable[str], schema: type, groups: Iterable[str], command: str) -> None:
    """Check the keys of command-line overrides (``key=value``, ``+key=``, ``~key``) against ``schema`` and
    the config ``groups`` (``data``, ``model/attention``); ``hydra.*`` and flags are Hydra's to check."""
    valid = set(schema_keys(schema)) | {g.replace("/", ".") for g in groups}
    for arg in args:
        if arg.startswith("-") and not arg.startswith("~") or "=" not in arg and not arg.startswith("~"):
            continue
        key = arg.split("=", 1)[0].lstrip("~+").split("@", 1)[0]
        if not key or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        if key.replace("/", ".") not in valid:
            raise unknown_key_error(key, sorted(valid), command)
