import pytest
import torch

from theorylab.core.train import curve_steps, train_ensemble


def _quadratic_loss(target):
    def loss_fn(p, step):
        loss = ((p["w"] - target) ** 2).sum(-1)
        return {"loss": loss}
    return loss_fn


def test_per_model_learning_rates_and_independence():
    target = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [3.0, 3.0]])
    lr = torch.tensor([0.1, 0.2, 0.05])
    res = train_ensemble({"w": torch.zeros(3, 2)}, ["w"], _quadratic_loss(target), lr, 200)
    assert torch.allclose(res.params["w"], target, atol=1e-3)
    solo = train_ensemble({"w": torch.zeros(1, 2)}, ["w"], _quadratic_loss(target[1:2]), lr[1:2], 200)
    assert torch.allclose(solo.params["w"][0], res.params["w"][1], atol=1e-7)


def test_nan_in_one_model_freezes_it_and_spares_the_others():
    target = torch.tensor([[1.0], [2.0], [3.0]])

    def loss_fn(p, step):
        loss = ((p["w"] - target) ** 2).sum(-1)
        if step >= 5:  # model 1 blows up from step 5 on
            loss = loss + torch.tensor([0.0, float("nan"), 0.0]) * p["w"].sum(-1)
        return {"loss": loss}

    res = train_ensemble({"w": torch.zeros(3, 1)}, ["w"], loss_fn, torch.full((3,), 0.1), 100, curve_points=10)
    assert res.diverged_at.tolist() == [-1, 5, -1]
    assert torch.isfinite(res.params["w"]).all()
    assert torch.allclose(res.params["w"][[0, 2]], target[[0, 2]], atol=1e-3)
    assert 0 < float(res.params["w"][1]) < 2  # frozen where it was at step 5
    assert res.curves["loss"].shape == (len(res.curve_steps), 3)


def test_curve_steps_cover_both_ends():
    assert curve_steps(100, 10)[0] == 0 and curve_steps(100, 10)[-1] == 100
    assert curve_steps(7, 50) == list(range(8))


def test_adamw_on_an_ensemble_is_torch_adamw_per_model_with_per_model_lr():
    from theorylab.core.train import AdamW

    torch.manual_seed(0)
    target = torch.randn(3, 5)
    start = {"w": torch.randn(3, 5)}
    start["w"][2, 0] = float("nan")  # model 2 is broken from the start: recorded, frozen, the others unaffected
    lr = torch.tensor([0.1, 0.03, 0.1])

    def loss_fn(p, step):  # [E]
        return {"loss": ((p["w"] - target) ** 2).mean(1)}

    res = train_ensemble(start, ["w"], loss_fn, lr, 20, optimizer=AdamW(0.01), curve_points=4)
    assert res.curve_steps[0] == 0 and res.curve_steps[-1] == 20 and res.curves["loss"].shape == (len(res.curve_steps), 3)
    for e in range(2):
        w = start["w"][e].clone().requires_grad_(True)
        opt = torch.optim.AdamW([w], lr=float(lr[e]), weight_decay=0.01, foreach=False)
        for _ in range(20):
            opt.zero_grad()
            ((w - target[e]) ** 2).mean().backward()
            opt.step()
        torch.testing.assert_close(res.params["w"][e], w.detach(), atol=1e-6, rtol=0)
    assert res.diverged_at.tolist() == [-1, -1, 0]


def test_over_grid_fills_one_output_per_key_in_chunks():
    from theorylab.core.ensemble import over_grid

    calls = []

    def fn(part):
        calls.append(part)
        x = torch.arange(part.start, part.stop, dtype=torch.float32)[:, None].expand(-1, 3)  # [g, E=3]
        return {"a": x, 0.5: -x}

    out = over_grid(10, elements_per_point=4, fn=fn, max_elements=12)  # 3 points per call
    assert [(p.start, p.stop) for p in calls] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert torch.equal(out["a"][:, 1], torch.arange(10.0)) and torch.equal(out[0.5], -out["a"])


def test_a_probe_returning_a_view_of_a_weight_records_each_checkpoints_value():
    from theorylab.core.train import train_ensemble

    params = {"w": torch.zeros(2, 3)}

    def loss_fn(p, step):
        return {"loss": ((p["w"] - 1.0) ** 2).sum(-1)}

    res = train_ensemble(params, ["w"], loss_fn, torch.full((2,), 0.1), 5,
                         probe_fn=lambda p, step: {"w0": p["w"][:, 0]}, curve_points=5)
    w0 = res.curves["w0"][:, 0]
    assert w0[0] == 0.0 and (w0[1:] > w0[:-1]).all()  # a view would record the final value at every checkpoint


def test_the_finite_check_flags_nan_and_both_infinities_per_model():
    from theorylab.core.train import _finite_per_model

    g = torch.zeros(5, 3, 4)
    g[1, 2, 3], g[2, 0, 0], g[3, 1, 1] = float("nan"), float("inf"), -float("inf")
    g[4] = 3e38  # large but finite
    assert _finite_per_model(g).tolist() == [True, False, False, False, True]
    assert _finite_per_model(torch.zeros(2, 0)).tolist() == [True, True]


@pytest.mark.parametrize("one_copy_below", [0, 1 << 15])  # per gradient, and all concatenated
def test_the_finite_check_over_all_gradients_equals_the_per_gradient_one(one_copy_below, monkeypatch):
    import theorylab.core.train as train
    from theorylab.core.train import _all_finite_per_model, _finite_per_model

    monkeypatch.setattr(train, "ONE_COPY_BELOW", one_copy_below)

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, 3, 4, generator=gen), torch.randn(6, 5, generator=gen), torch.zeros(6, 0),
             torch.randn(6, 2, 2, 2, generator=gen)]
    grads[0][1, 2, 3], grads[1][2, 4], grads[3][3, 1, 0, 1] = float("nan"), float("inf"), -float("inf")
    grads[1][4] = 3e38  # large but finite
    grads[3][5, 0, 0, 0] = -3e38
    want = grads and torch.stack([_finite_per_model(g) for g in grads]).all(0)
    assert _all_finite_per_model(grads, 6, "cpu").tolist() == want.tolist() == [True, False, False, False, True, True]
    assert _all_finite_per_model([torch.zeros(2, 0)], 2, "cpu").tolist() == [True, True]
    assert _all_finite_per_model([torch.full((1, 3), float("nan"))], 1, "cpu").tolist() == [False]


def test_sgd_update_is_the_per_parameter_step_bit_for_bit():
    from theorylab.core.ensemble import expand_to
    from theorylab.core.train import SGD

    gen = torch.Generator().manual_seed(1)
    params = {"a": torch.randn(4, 3, 5, generator=gen), "b": torch.randn(4, 7, generator=gen)}
    grads = {k: torch.randn(v.shape, generator=gen) for k, v in params.items()}
    lr = torch.tensor([0.1, 0.37, 1e-3, 2.5])
    want = {k: v - expand_to(lr, grads[k]) * grads[k] for k, v in params.items()}
    SGD().update(params, grads, lr, {}, 0)
    assert all(torch.equal(params[k], want[k]) for k in params)


def test_sgd_follows_a_new_learning_rate_tensor():
    from theorylab.core.train import SGD

    opt, state = SGD(), {}
    p, g = {"w": torch.zeros(2, 3)}, {"w": torch.ones(2, 3)}
    opt.update(p, g, torch.tensor([1.0, 2.0]), state, 0)
    opt.update(p, g, torch.tensor([0.5, 0.0]), state, 1)  # e.g. model 1 frozen: a new lr tensor
    assert p["w"].tolist() == [[-1.5] * 3, [-2.0] * 3]


def test_a_hand_written_gradient_trains_as_autograd_does_bit_for_bit():
    """grad_fn (the loss and backward(w) by hand) in place of loss_fn and autograd: the same weights, curves and
    divergence, with both optimizers and a model whose loss turns NaN (frozen by the mask handed to backward)."""
    from theorylab.core.train import AdamW, SGD

    target = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [3.0, 3.0]])
    blow_up = torch.tensor([0.0, float("nan"), 0.0])

    def loss_fn(p, step):
        loss = ((p["w"] - target) ** 2).sum(-1) + p["b"][:, 0] ** 2
        return {"loss": loss + blow_up * p["b"][:, 0] if step >= 7 else loss, "b": p["b"][:, 0] * 1.0}

    def grad_fn(p, step):
        diff = p["w"] - target
        loss = (diff ** 2).sum(-1) + p["b"][:, 0] ** 2
        if step >= 7:
            loss = loss + blow_up * p["b"][:, 0]

        def backward(g):  # autograd's sums, in its order: d/dw = g 2 diff, d/db = g 2 b (+ g blow_up after step 7)
            db = g * (2 * p["b"][:, 0])
            return [g[:, None] * (2 * diff), (db + g * blow_up if step >= 7 else db)[:, None]]
        return {"loss": loss, "b": p["b"][:, 0] * 1.0}, backward

    start = {"w": torch.zeros(3, 2), "b": torch.tensor([[0.5], [-0.25], [1.0]])}
    lr = torch.tensor([0.1, 0.2, 0.05])
    for opt in (SGD(), AdamW(0.01)):
        a = train_ensemble(start, ["w", "b"], loss_fn, lr, 20, optimizer=opt, curve_points=5)
        b = train_ensemble(start, ["w", "b"], None, lr, 20, optimizer=opt, curve_points=5, grad_fn=grad_fn)
        assert a.diverged_at.tolist() == b.diverged_at.tolist() == [-1, 7, -1]
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
        assert a.curves.keys() == b.curves.keys()
        for k in a.curves:  # NaN where model 1's loss is
            torch.testing.assert_close(a.curves[k], b.curves[k], rtol=0, atol=0, equal_nan=True)
        assert not b.params["w"].requires_grad
