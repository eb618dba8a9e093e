"""--help's list of settings is generated from the schemas (seq2seq/cli/keyhelp.py): it cannot miss a key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from seq2seq.cli.keyhelp import field_comments, key_lines
from seq2seq.cli.schemas import SCHEMAS


def leaf_keys(schema: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(schema):
        nested = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        keys += leaf_keys(type(nested), f"{prefix}{f.name}.") if dataclasses.is_dataclass(nested) else [prefix + f.name]
    return keys


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_setting_is_listed_with_its_default(name: str) -> None:
    schema = SCHEMAS[name]
    listed = {line.split(" = ")[0].strip(): line.split(" = ")[1].split()[0] for line in key_lines(schema)
              if not line.startswith("   ")}  # not a wrapped comment
    assert sorted(listed) == sorted(leaf_keys(schema))
    for key, shown in listed.items():
        *groups, leaf = key.split(".")
        owner = schema
        for group in groups:
            owner = type(next(f for f in dataclasses.fields(owner) if f.name == group).default_factory())
        field = next(f for f in dataclasses.fields(owner) if f.name == leaf)
        value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert shown == ("null" if value is None else str(value).lower() if isinstance(value, bool) else str(value))


def test_comments_come_from_the_schema_source() -> None:
    from seq2seq.config import DataConfig, TrainConfig

    assert field_comments(TrainConfig)["patience"] == "validations without BLEU gain before stopping"
    assert field_comments(DataConfig)["sampling_alpha"].startswith("Subword regularization (Kudo 2018)")


def test_train_help_lists_the_keys_the_hand_written_help_missed() -> None:
    out = subprocess.run([sys.executable, "-c", "from seq2seq.cli.main import train; train()", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for key in ("train.keep_checkpoints", "train.average_at_end", "train.valid_batch_tokens", "model.attention_heads"):
        assert f"  {key} = " in out.stdout
