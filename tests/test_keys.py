"""A key that is not in the schema fails, however it was added, naming the nearest valid key."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import toy_config

from seq2seq.cli.keys import check_keys, check_overrides, schema_keys
from seq2seq.cli.schemas import EvaluateConfig, TranslateConfig
from seq2seq.config import Config
from seq2seq.errors import ConfigError

GROUPS = ("data", "model", "model/attention", "optim", "decode", "experiment")


def test_schema_keys_include_nested_fields() -> None:
    keys = schema_keys(Config)
    assert {"train", "train.max_steps", "model.attention", "seed", "init_from"} <= set(keys)
    assert "decode.beam_size" in schema_keys(EvaluateConfig) and "data" not in schema_keys(TranslateConfig)


@pytest.mark.parametrize("override", ["+train.max_step=5", "++train.max_step=5", "+max_step=5"])
def test_an_added_key_fails_naming_the_nearest(tmp_path: Path, override: str) -> None:
    """Hydra's own hint (+key=value) used to add the key, which the dataclasses then dropped: a no-op."""
    with pytest.raises(ConfigError, match=r"unknown setting '(train\.)?max_step'; did you mean train\.max_steps\?"):
        toy_config(tmp_path, override)


@pytest.mark.parametrize(("args", "schema", "message"), [
    (["experiment=toy", "train.max_step=5"], Config, "'train.max_step'; did you mean train.max_steps"),
    (["+model.emb_sise=3"], Config, "did you mean model.emb_size"),
    (["~train.max_stepz"], Config, "did you mean train.max_steps"),
    (["checkpoint=x.pt", "+decode.beam_sise=3"], EvaluateConfig, "did you mean decode.beam_size"),
    (["data.dir=x"], TranslateConfig, "unknown setting 'data.dir'"),
])
def test_command_line_keys_are_checked_before_hydra(args: list[str], schema: type, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_overrides(args, schema, GROUPS if schema is Config else ("decode",), "cmd")


def test_valid_command_lines_pass() -> None:
    args = ["-m", "--cfg", "job", "experiment=toy", "model/attention=luong_dot,bahdanau", "+experiment=toy",
            "hydra.run.dir=x", "hydra/job_logging=none", "train.max_steps=5", "data.dir=/a=b", "~resume"]
    check_overrides(args, Config, GROUPS, "seq2seq-train")


def test_composed_keys_are_checked_recursively() -> None:
    check_keys({"train": {"max_steps": 3}, "hydra": {"anything": 1}}, Config)
    with pytest.raises(ConfigError, match="'train.max_step'"):
        check_keys({"train": {"max_step": 3}}, Config)
    with pytest.raises(ConfigError, match="'decode.beam_sise'; did you mean decode.beam_size"):
        check_keys({"decode": {"beam_sise": 3}}, EvaluateConfig, "seq2seq-evaluate")
