"""Every config in configs/ composes and builds a model; bad overrides fail with a message naming them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seq2seq.cli.schemas import EvaluateConfig, TranslateConfig, compose, register_configs
from seq2seq.config import DataConfig, DecodeConfig, ModelConfig, OptimConfig, to_dataclass, to_dict
from seq2seq.errors import ConfigError
from seq2seq.nn.model import Seq2Seq

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("data", options("data"))
@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("attention", options("model/attention"))
def test_every_combination_composes_and_builds(data: str, model: str, attention: str) -> None:
    overrides = [f"data={data}", f"model={model}", f"model/attention={attention}"]
    if model == "transformer" and attention != "multihead":  # its decoder's cross-attention is multihead
        with pytest.raises(ConfigError, match="set model.decoder=rnn"):
            compose(overrides)
        return
    cfg = compose(overrides)
    assert cfg.model.attention == attention
    net = Seq2Seq(cfg.model, 40, 40 if cfg.model.share_embeddings else 50)  # one matrix: a joint vocabulary
    assert net.num_parameters() > 0


def flat(values: dict, prefix: str = "") -> dict[str, object]:
    """Nested settings as dotted keys: {"model.emb_size": 256, ...}."""
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in ("optim", "decode", "experiment") for o in options(g)])
def test_other_groups_set_exactly_their_values(group: str, option: str) -> None:
    """Choosing an option changes the settings its file states, to the values it states, and nothing else: an
    experiment starts from the group options its defaults list picks."""
    values = OmegaConf.to_container(OmegaConf.load(CONFIGS / group / f"{option}.yaml")) or {}
    picks = [f"{key.split()[-1].lstrip('/')}={value}"  # "override /model/attention: x" -> model/attention=x
             for entry in values.pop("defaults", []) for key, value in entry.items()]
    stated = flat(values, "" if group == "experiment" else f"{group}.")
    cfg = compose([f"{group}={option}"])
    assert flat(to_dict(cfg)) == flat(to_dict(compose(picks))) | stated
    assert Seq2Seq(cfg.model, 40, 50).num_parameters() > 0


def test_joeynmt_reference_trains_like_joeynmt() -> None:
    """Pinned against changes to our defaults: JoeyNMT's reference has no subword sampling and no tying."""
    cfg = compose(["experiment=joeynmt_reference"])
    assert cfg.data.sampling_alpha is None
    assert not cfg.model.tie_embeddings and cfg.model.attention == "luong_concat" and cfg.train.batch_sentences == 64


def test_language_pair_by_override() -> None:
    cfg = compose(["data.src_lang=en", "data.tgt_lang=fr"])
    assert (cfg.data.src_lang, cfg.data.tgt_lang, cfg.data.name) == ("en", "fr", "multi30k_en_fr")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.emb_sise=3", "emb_sise"),
        ("train.max_epochs=abc", "max_epochs"),
        ("model/attention=bahdanu", "bahdanu"),
        ("data=nosuchdata", "nosuchdata"),
    ],
)
def test_bad_overrides_fail_naming_the_key(override: str, expected: str) -> None:
    with pytest.raises((HydraException, OmegaConfBaseException, ConfigError)) as err:
        compose([override])
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model/attention=bahdanau", "model.attention_window=5"], "local-p"),
        (["model.dropout=1.5"], "model.dropout"),
        (["data.spm_type=word"], "bpe, unigram"),
        (["model.tie_embeddings=true", "model/attention=luong_general"], "model.dec_hidden=256"),
        (["decode.nbest=9"], "decode.nbest"),
        (["optim.schedule=linear"], "cosine, noam, plateau"),
        (["optim.lr=0.001", "optim.min_lr=0.01"], "optim.min_lr"),
        (["data.sampling_alpha=0"], "data.sampling_alpha must be > 0"),
        (["data.spm_type=bpe", "data.sampling_alpha=1.5"], "merge-dropout rate"),
        (["data.sampling_nbest=0"], "data.sampling_nbest"),
    ],
)
def test_cross_field_checks(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    assert expected in str(err.value)


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("seq2seq-train")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_reports_a_misspelt_key_without_a_traceback(tmp_path: Path) -> None:
    out = run_train("model.atention=luong_dot", cwd=tmp_path)
    assert out.returncode != 0
    assert "atention" in out.stderr and "Traceback" not in out.stderr


def test_cli_reports_a_cross_field_error_cleanly(tmp_path: Path) -> None:
    out = run_train("model/attention=bahdanau", "model.attention_window=4", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("error: model.attention_window") and "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("*.pt"))


SCHEMAS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "decode": DecodeConfig}


@pytest.mark.parametrize("group", sorted(SCHEMAS))
def test_group_options_state_only_what_differs_from_the_schema(group: str) -> None:
    """Every default lives in seq2seq/config.py: a group option that repeated one would be a second home."""
    defaults = SCHEMAS[group]()
    for path in sorted((CONFIGS / group).glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(path)) or {}
        repeated = [key for key, value in values.items() if key != "defaults" and getattr(defaults, key) == value]
        assert not repeated, f"{path.name} repeats the schema's defaults of {repeated}"


def test_each_attention_option_names_its_attention_and_nothing_else() -> None:
    for path in (CONFIGS / "model" / "attention").glob("*.yaml"):
        assert OmegaConf.to_container(OmegaConf.load(path)) == {"attention": path.stem}


def eval_config(*overrides: str, name: str = "evaluate", schema: type = EvaluateConfig) -> object:
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module(config_module="seq2seq.configs", version_base="1.3"):
        return to_dataclass(compose(config_name=name, overrides=list(overrides)), schema)


def test_configs_compose_with_decode_defaults_and_overrides() -> None:
    cfg = eval_config("checkpoint=x.pt", "decode.beam_size=10", "decode.alpha=0.6", "out=hyp.de")
    assert isinstance(cfg, EvaluateConfig) and cfg.decode.beam_size == 10 and cfg.out == "hyp.de"
    tcfg = eval_config("checkpoint=x.pt", "decode=greedy", "show_attention=true", name="translate",
                       schema=TranslateConfig)
    assert isinstance(tcfg, TranslateConfig) and tcfg.decode.beam_size == 1 and tcfg.show_attention


@pytest.mark.parametrize("overrides, message", [
    (["src=a", "split=val"], "set one of them"),
    (["ref=b"], "ref= needs src="),
    (["decode.nbest=6"], "decode.nbest must be between 1 and decode.beam_size"),
])
def test_bad_settings_are_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        eval_config("checkpoint=x.pt", *overrides)
