"""Progress bars: on standard error for a person at a terminal, silent otherwise."""

from __future__ import annotations

import igfiqa.progress as P


def test_a_bar_draws_on_stderr_only_when_stderr_is_a_terminal(monkeypatch, capsys) -> None:
    monkeypatch.setattr(P, "stderr_is_terminal", lambda: False)
    with P.ProgressBar("quiet", 4) as bar:
        bar.update(4)
        assert not bar.shown
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(P, "stderr_is_terminal", lambda: True)
    with P.ProgressBar("score", 4, fields={"loss": "loss {:.2f}"}) as bar:
        assert bar.shown
        bar.update(4, loss=0.5)
    out, err = capsys.readouterr()
    assert out == "" and "score" in err and "4/4" in err and "loss 0.50" in err


def test_a_bar_that_was_not_asked_for_never_draws(monkeypatch, capsys) -> None:
    monkeypatch.setattr(P, "stderr_is_terminal", lambda: True)
    with P.ProgressBar("off", 2, enabled=False) as bar:
        bar.update(1, total=3)
    assert capsys.readouterr() == ("", "")
