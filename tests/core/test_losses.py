"""Losses and metrics: a non-finite prediction is an error, never a success."""
import torch

from theorylab.core.losses import accuracy, cross_entropy, hinge, logistic, mse, sign_error


def test_non_finite_predictions_count_as_errors():
    y = torch.ones(1, 4)
    f = torch.tensor([[1.0, float("nan"), float("inf") * -1, 2.0]])
    assert float(sign_error(f, y)) == 0.5
    logits = torch.tensor([[[2.0, 0.0], [float("nan"), 0.0]]])
    assert float(accuracy(logits, torch.tensor([[0, 0]]))) == 0.5


def test_losses_match_their_definitions_over_leading_axes():
    f, y = torch.randn(3, 2, 7), torch.sign(torch.randn(2, 7))
    torch.testing.assert_close(hinge(f, y), torch.clamp(1 - y * f, min=0).mean(-1))
    torch.testing.assert_close(logistic(f, y), torch.log1p(torch.exp(-y * f)).mean(-1))
    assert mse(torch.ones(2, 5, 3), torch.zeros(2, 5, 3), event_dims=1).tolist() == [1.0, 1.0]
    lg, t = torch.randn(2, 6, 4), torch.randint(0, 4, (2, 6))
    ref = torch.stack([torch.nn.functional.cross_entropy(lg[e], t[e]) for e in range(2)])
    torch.testing.assert_close(cross_entropy(lg, t), ref)
