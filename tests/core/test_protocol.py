"""The study protocol (core.protocol), the measured memory (core.memory) and the batch helpers (core.batch)."""
from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from pydantic import Field

from theorylab.core.batch import Examples, gather_rows
from theorylab.core.config import StudyConfig
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.memory import LiveBytes, footprint
from theorylab.core.progress import QUIET
from theorylab.core.protocol import Graded, Training
from theorylab.core.study import Study, get_study

CPU = torch.device("cpu")


class ToyConfig(StudyConfig):
    """Least squares y = <w*, x> in d dimensions, fitted by full-batch GD on n points."""
    study: ClassVar[str] = "toy"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset({"seed", "lr"})
    d: int = Field(4, ge=1, le=4096)
    n: int = Field(32, ge=1, le=1 << 16)
    steps: int = Field(20, ge=1, le=10_000)
    lr: float = Field(0.1, gt=0, le=1e4)


def toy_training(cfgs, rng, device) -> Training:
    d, n = shared_value(cfgs, "d"), shared_value(cfgs, "n")
    X = rng.normal((n, d), "x").to(device)  # [E, n, d]
    w_star = rng.normal((d,), "teacher").to(device)  # [E, d]
    y = torch.einsum("end,ed->en", X, w_star)

    def loss(p, step):
        return {"loss": ((torch.einsum("end,ed->en", X, p["w"]) - y) ** 2).mean(-1)}

    def grade(res):
        return Graded({"distance": (res.params["w"] - w_star).norm(dim=-1)}, params={**res.params, "w_star": w_star})

    return Training({"w": torch.zeros(len(cfgs), d, device=device)}, ["w"], loss, scalar_tensor(cfgs, "lr", device),
                    shared_value(cfgs, "steps"), grade, what="GD steps", curve_points=4)


def toy_study(**kw) -> Study:
    return Study(name="toy", title="toy", paper="-", config_cls=ToyConfig, sizes={"quick": {}}, training=toy_training, **kw)


def test_the_protocol_trains_grades_and_records_every_model():
    s = toy_study()
    cfgs = [ToyConfig(seed=0), ToyConfig(seed=1, lr=0.05), ToyConfig(seed=2, lr=1e3)]
    res = s.train_group(cfgs, CPU, QUIET)
    assert res.status == ["done", "done", "diverged"]  # lr 1e3 blows up: frozen, recorded, the others go on
    assert res.metrics[0]["distance"] < res.metrics[1]["distance"] < 1.0  # the larger stable step gets closer
    assert res.metrics[0]["train_loss"] == pytest.approx(res.curves[0]["loss"][-1])
    assert res.metrics[2]["diverged_at"] >= 0
    assert set(res.params) == {"w", "w_star"}  # Graded.params chose what is stored
    assert res.curves[0]["step"] == [0, 5, 10, 15, 20]


def test_a_model_trains_the_same_alone_or_in_an_ensemble():
    s = toy_study()
    cfgs = [ToyConfig(seed=i, lr=0.05 * (i + 1)) for i in range(3)]
    together, alone = s.train_group(cfgs, CPU, QUIET), s.train_group(cfgs[1:2], CPU, QUIET)
    assert torch.allclose(together.params["w"][1], alone.params["w"][0], atol=1e-6)


def test_a_study_gives_training_or_its_own_train_group():
    with pytest.raises(TypeError, match="training="):
        Study(name="toy", title="toy", paper="-", config_cls=ToyConfig, sizes={"quick": {}})
    assert toy_study().train_group.training is toy_training  # core built it from the protocol


def test_live_bytes_counts_storages_once_and_frees_them():
    meter = LiveBytes()
    with meter:
        a = torch.zeros(1000)  # 4,000 bytes
        view = a[:10]  # a view: no new storage
        b = torch.ones(500, dtype=torch.float64)  # 4,000 bytes
        del b
        c = torch.zeros(250)  # 1,000 bytes, after b is freed
    assert meter.peak == 8000 and meter.now == 5000
    del a, view, c


def test_live_bytes_sees_what_autograd_saves_for_backward():
    def run(n):
        meter = LiveBytes()
        with meter:
            w = torch.ones(n, 64, requires_grad=True)
            h = torch.tanh(w * 2.0)  # tanh saves its output for backward
            torch.autograd.grad((h * h).sum(), w)
        return meter.peak
    assert run(2000) > 3 * 2000 * 64 * 4  # w, h, h*h and the saved output are alive at once
    assert run(2000) == run(2000)  # the count is a property of the program: the same every time


def test_footprint_is_measured_grows_with_the_batch_and_is_cached():
    icl = get_study("icl")
    small = icl.config("quick", **icl.tiny)
    big = small.replace(B=4 * small.B, l_tr=2 * small.l_tr)
    fs, fb = footprint(icl, small), footprint(icl, big)
    assert fb.per_model > fs.per_model > 0
    assert footprint(icl, small.replace(seed=7)) is fs  # the same group: measured once
    assert icl.bytes_per_model(small) == fs.per_model + fs.shared




def test_examples_take_rows_heads_and_models():
    import dataclasses

    @dataclasses.dataclass
    class Batch(Examples):
        shared = ("table",)
        x: torch.Tensor  # [E, N, 2]
        y: torch.Tensor  # [E, N]
        table: torch.Tensor  # [K]: not per example

    E, N = 3, 5
    b = Batch(torch.arange(E * N * 2.0).view(E, N, 2), torch.arange(E * N).view(E, N), torch.arange(7))
    idx = torch.tensor([[4, 0], [1, 1], [2, 3]])  # [E, 2]
    r = b.rows(idx)
    assert torch.equal(r.y, torch.stack([b.y[e, idx[e]] for e in range(E)]))
    assert torch.equal(r.x, torch.stack([b.x[e, idx[e]] for e in range(E)]))
    assert torch.equal(r.table, b.table) and b.size == N and b.head(2).size == 2
    assert torch.equal(b.models(slice(1, 2)).y, b.y[1:2]) and torch.equal(gather_rows(b.y, idx), r.y)
