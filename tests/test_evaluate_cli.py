"""seq2seq-evaluate on the small toy reverse model: its scores are sacreBLEU's own, its inputs and errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.checkpoint import checkpoint_config, load_checkpoint
from seq2seq.config import Config, DataConfig, EvaluateConfig, TranslateConfig, register_configs, to_dataclass
from seq2seq.errors import ConfigError, DataError
from seq2seq.evaluate import read_inputs, resolve_inputs
from seq2seq.translator import Translator

EVALUATE = "from seq2seq.cli import evaluate; evaluate()"


def run_evaluate(*overrides: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", EVALUATE, "threads=2", *overrides]
    env = {**os.environ, "PYTHONUTF8": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=600, env=env)


def sacrebleu_lines(ref: Path, hyp: Path, *args: str) -> list[str]:
    """sacreBLEU's own command line on the written files, in its text format."""
    cmd = [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-w", "2", "-f", "text", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    return [line.strip() for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def checkpoint(toy_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the toy model's best.pt alone in a directory (the default hypothesis file goes there)."""
    path = tmp_path_factory.mktemp("evaluate") / "best.pt"
    shutil.copy(toy_run / "best.pt", path)
    return path


@pytest.fixture(scope="module")
def model_config(checkpoint: Path) -> Config:
    return checkpoint_config(load_checkpoint(checkpoint))


@pytest.fixture(scope="module")
def split_run(checkpoint: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    plots = tmp_path_factory.mktemp("plots")
    proc = run_evaluate(f"checkpoint={checkpoint}", "lowercase=true", f"attention_plots={plots}",
                        "attention_plots_n=3")
    return proc, plots


def test_split_scores_are_sacrebleus_own(split_run: tuple[subprocess.CompletedProcess[str], Path],
                                         checkpoint: Path, model_config: Config) -> None:
    proc, _ = split_run
    assert proc.returncode == 0, proc.stderr
    hyp = checkpoint.parent / "hyp.test.tgt"  # the default output: next to the checkpoint
    ref = Path(model_config.data.dir) / "test.tgt"
    n_hyp, n_ref = (len(p.read_text(encoding="utf-8").splitlines()) for p in (hyp, ref))
    assert n_hyp == n_ref == 200
    expected = sacrebleu_lines(ref, hyp, "-m", "bleu", "chrf")
    expected += sacrebleu_lines(ref, hyp, "-m", "bleu", "-lc")
    assert proc.stdout.splitlines() == expected
    assert "case:lc" in expected[2]
    assert float(expected[0].split(" = ")[1].split()[0]) > 50  # the toy model did learn to reverse
    assert "sentences/s" in proc.stderr


def test_split_hypotheses_equal_the_python_api(split_run: tuple[subprocess.CompletedProcess[str], Path],
                                              checkpoint: Path, model_config: Config) -> None:
    assert split_run[0].returncode == 0, split_run[0].stderr
    sources = (Path(model_config.data.dir) / "test.src").read_text(encoding="utf-8").splitlines()
    hyps = (checkpoint.parent / "hyp.test.tgt").read_text(encoding="utf-8").splitlines()
    assert Translator.from_checkpoint(checkpoint, device="cpu").translate(sources) == hyps


def test_split_attention_plots(split_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, plots = split_run
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in plots.iterdir()) == ["00001.png", "00002.png", "00003.png"]


def test_file_pair_hypotheses_to_stdout_scores_to_stderr(checkpoint: Path, model_config: Config,
                                                         tmp_path: Path) -> None:
    src, ref = tmp_path / "my.src", tmp_path / "my.ref"
    data = Path(model_config.data.dir)
    sources = (data / "val.src").read_text(encoding="utf-8").splitlines()[:12]
    references = (data / "val.tgt").read_text(encoding="utf-8").splitlines()[:12]
    src.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    ref.write_text("".join(r + "\n" for r in references), encoding="utf-8")
    proc = run_evaluate(f"checkpoint={checkpoint}", f"src={src}", f"ref={ref}", "decode.beam_size=3",
                        "decode.batch_tokens=40")
    assert proc.returncode == 0, proc.stderr
    hyps = proc.stdout.splitlines()
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    assert hyps == translator.translate(sources, beam_size=3)  # other batches, the same output
    (tmp_path / "hyp").write_text(proc.stdout, encoding="utf-8")
    bleu, chrf = sacrebleu_lines(ref, tmp_path / "hyp", "-m", "bleu", "chrf")
    assert bleu in proc.stderr and chrf in proc.stderr


def test_source_alone_is_only_translated(checkpoint: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "a.src", tmp_path / "out" / "a.hyp"
    src.write_text("a b c\n\nd e\n", encoding="utf-8")
    out.parent.mkdir()
    proc = run_evaluate(f"checkpoint={checkpoint}", f"src={src}", f"out={out}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "BLEU" not in proc.stderr
    assert out.read_text(encoding="utf-8").split("\n")[1:] == ["", "e d", ""]


def test_misaligned_files_exit_2_with_a_message(checkpoint: Path, tmp_path: Path) -> None:
    src, ref = tmp_path / "a.src", tmp_path / "a.ref"
    src.write_text("a b\nc d\n", encoding="utf-8")
    ref.write_text("b a\n", encoding="utf-8")
    proc = run_evaluate(f"checkpoint={checkpoint}", f"src={src}", f"ref={ref}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (f"error: misaligned files: {src} has 2 lines but {ref} has 1; "
                                            "line n of the reference must translate line n of the source")


def test_missing_checkpoint_exits_2_with_a_message(tmp_path: Path) -> None:
    proc = run_evaluate(f"checkpoint={tmp_path / 'none.pt'}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1].startswith(f"error: no checkpoint at {tmp_path / 'none.pt'}; pass")


# ---- inputs, in process ---------------------------------------------------------------------------


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


def test_resolve_inputs(tmp_path: Path) -> None:
    data = DataConfig(dir=str(tmp_path), src_lang="en", tgt_lang="de", test_split="test_2016")
    for name in ("test_2016.en", "test_2016.de", "val.en"):
        (tmp_path / name).write_text("a\n", encoding="utf-8")
    run = tmp_path / "run" / "best.pt"
    default = resolve_inputs(EvaluateConfig(checkpoint=str(run)), data)
    assert (default.name, default.src.name, default.out) == ("test_2016", "test_2016.en",
                                                             str(run.parent / "hyp.test_2016.de"))
    alias = resolve_inputs(EvaluateConfig(checkpoint=str(run), split="test"), data)
    assert alias.name == "test_2016"
    val = resolve_inputs(EvaluateConfig(checkpoint=str(run), split="val"), data)
    assert val.ref is None  # no val.de: only translate
    pair = resolve_inputs(EvaluateConfig(checkpoint=str(run), src=str(tmp_path / "val.en")), data)
    assert (pair.ref, pair.out) == (None, "-")
    with pytest.raises(DataError, match="no source file .*nope.en"):
        resolve_inputs(EvaluateConfig(checkpoint=str(run), src=str(tmp_path / "nope.en")), data)
    with pytest.raises(DataError, match="Splits in .*: test_2016, val; pick one with split="):
        resolve_inputs(EvaluateConfig(checkpoint=str(run), split="dev"), data)
    with pytest.raises(DataError, match="data directory .* does not exist here; pass data_dir="):
        resolve_inputs(EvaluateConfig(checkpoint=str(run), data_dir=str(tmp_path / "nowhere")), data)
    assert read_inputs(default) == (["a"], ["a"])
