"""tl.train and tl.check show progress bars by default (a quick run is a minute of silence otherwise); progress=False
is silent."""
import io

from rich.console import Console

from theorylab import api
from theorylab.core import progress


def _train(monkeypatch, tiny, **kw) -> str:
    buf = io.StringIO()
    # the bars' console, pointed at a buffer: a wide non-terminal console prints the final state of each bar
    monkeypatch.setattr(progress, "console", Console(file=buf, width=200, force_terminal=False))
    cfgs = [api.config("icl", **tiny).replace(seed=s) for s in range(2)]
    run = api.train("icl", cfgs, store=":memory:", device="cpu", **kw)
    assert len(run.configs) == 2
    return buf.getvalue()


def test_train_shows_progress_by_default(monkeypatch, tiny, one_thread):
    shown = _train(monkeypatch, tiny)
    assert "2 model(s)" in shown and f"{tiny['steps']}/{tiny['steps']}" in shown  # the bar, run to its end


def test_train_progress_can_be_turned_off(monkeypatch, tiny, one_thread):
    assert _train(monkeypatch, tiny, progress=False) == ""


def test_train_metrics_rows_carry_the_config_fields(tiny, one_thread):
    cfgs = [api.config("icl", **tiny).replace(seed=s) for s in range(2)]
    run = api.train("icl", cfgs, store=":memory:", device="cpu", progress=False)
    rows = run.metrics
    assert list(rows["seed"]) == [0, 1] and list(rows["config_hash"]) == [c.hash for c in cfgs]
    assert all(rows[f].nunique() == 1 for f in tiny)  # the fields the test set, one value each
    assert "train_loss" in rows and rows["train_loss"].notna().all()  # the metrics follow the fields
