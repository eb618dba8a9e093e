"""seq2seq-translate's input and output (seq2seq/cli/prompt.py); the piped command itself is tested in test_cli.py."""

from __future__ import annotations

import pytest

from seq2seq.cli import prompt


def test_ctrl_c_at_the_prompt_clears_the_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    typed = iter([KeyboardInterrupt(), "a b", EOFError()])

    def fake_input(prompt: str = "") -> str:
        item = next(typed)
        if isinstance(item, BaseException):
            raise item
        return item

    answered = []
    monkeypatch.setattr("builtins.input", fake_input)
    monkeypatch.setattr(prompt, "answer", lambda translator, cfg, line, number: answered.append((line, number)))
    prompt.interactive(None, None)  # type: ignore[arg-type]
    assert answered == [("a b", 1)]  # the prompt came back after Ctrl-C; Ctrl-D quit
    assert "interrupted" not in capsys.readouterr().err
