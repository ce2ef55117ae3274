"""The mean-square Bellman error of the Q-network with its gradient written out by hand (issue 26: the step's speed
path).

The network is tiny (one hidden layer of m = 32 on S = 8 one-hot states at the defaults), so at E = 64 eager
autograd's per-op cost is nearly all of a step: model.q_values through core.nn.linear records ~25 ops (views,
expands, bias broadcasts) and its backward ~35. Here the forward is 6 ops and the backward 9:

    H = X W1 + b1,  Q = ReLU(H) W2 + b2   (X: the rows the batch reads, [R, d])    q_b = Q[row_b, a_b]
    loss = mean_b (q_b - y_b)^2

    dq = 2 (q - y) / B;  dQ = dq summed into the read entries;  dW2 = ReLU(H)^T dQ;  db2 = sum_rows dQ
    dH = dQ W2^T [H > 0];  dW1 = X^T dH;  db1 = sum_rows dH

Same numbers as autograd through model.q_values up to float rounding (the order of the sums differs):
tests/studies/dqn/test_dqn_speed_path.py holds the loss, the gradients and whole trainings equal to it.
"""
from __future__ import annotations

import torch


def bellman_forward(X, index, y, W1, b1, W2, b2, identity_rows: bool = False):
    """-> (loss [E], what bellman_backward needs). identity_rows: X is the identity (one-hot features, every state's
    row), so X W1 is W1 itself: b1 + W1 is what baddbmm(b1, I, W1) gives bit for bit (each entry a sum of one exact
    product and exact zeros: tests/studies/dqn/test_dqn_speed_path.py), one op instead of a batched product."""
    H = b1[:, None] + W1 if identity_rows else torch.baddbmm(b1[:, None], X, W1)  # [E, R, m]
    R = torch.relu(H)
    QT = torch.baddbmm(b2[:, :, None], W2.transpose(1, 2), R.transpose(1, 2))  # Q^T            [E, A, R]
    err = torch.gather(QT.flatten(1), 1, index) - y  # q - y                                    [E, B]
    return (err * err).mean(-1), (X, index, W2, H, R, err)


def bellman_backward(saved, g: torch.Tensor, need=(True,) * 7, identity_rows: bool = False) -> list:
    """The gradients of sum_e g_e loss_e for BellmanLoss's inputs (None where `need` says no). identity_rows: as in
    bellman_forward, X^T dH is dH itself."""
    X, index, W2, H, R, err = saved
    E, B = err.shape
    A = W2.shape[-1]
    dq = err * (g[:, None] * (2.0 / B))  # [E, B]
    dQT = dq.new_zeros(E, A * R.shape[1]).scatter_add_(1, index, dq).view(E, A, -1)  # [E, A, R]
    grad = [None] * 7
    if need[5]:
        grad[5] = torch.bmm(dQT, R).transpose(1, 2)  # ReLU(H)^T dQ                                 [E, m, A]
    if need[6]:
        grad[6] = dQT.sum(2)
    if need[3] or need[4]:
        dH = torch.ops.aten.threshold_backward(torch.bmm(dQT.transpose(1, 2), W2.transpose(1, 2)), H, 0)  # ReLU's
        if need[3]:
            grad[3] = dH if identity_rows else torch.bmm(X.transpose(1, 2), dH)
        if need[4]:
            grad[4] = dH.sum(1)
    return grad


class BellmanLoss(torch.autograd.Function):
    """(X [E, R, d], index [E, B] into the flattened Q^T [E, A R] (entry a R + row), y [E, B], W1 [E, d, m],
    b1 [E, m], W2 [E, m, A], b2 [E, A]) -> loss [E]: mean_b (Q(X)[row_b, a_b] - y_b)^2. Q is formed transposed,
    [E, A, R] = W2^T ReLU(H)^T: CPU bmm runs a product with A = 2 output columns 2-3x slower than its transpose."""

    @staticmethod
    def forward(ctx, X, index, y, W1, b1, W2, b2):
        loss, saved = bellman_forward(X, index, y, W1, b1, W2, b2)
        ctx.save_for_backward(*saved)
        return loss

    @staticmethod
    def backward(ctx, g):
        return tuple(bellman_backward(ctx.saved_tensors, g, ctx.needs_input_grad))


def bellman_loss(params: dict[str, torch.Tensor], X: torch.Tensor, index: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_b (Q(X; omega)[row_b, a_b] - y_b)^2 [E] by BellmanLoss (rows X [E, R, d]; index a R + row)."""
    return BellmanLoss.apply(X, index, y, params["fc1.w"], params["fc1.b"], params["fc2.w"], params["fc2.b"])


def bellman_loss_and_grad(params: dict[str, torch.Tensor], X: torch.Tensor, index: torch.Tensor, y: torch.Tensor,
                          identity_rows: bool = False):
    """(loss [E], backward): bellman_loss without autograd, for core's trainer (core.train.GradFn): backward(g [E])
    -> the gradients of sum_e g_e loss_e for fc1.w, fc1.b, fc2.w, fc2.b (model.TRAINABLE's order), the same ops as
    BellmanLoss's backward. identity_rows: X is the identity (see bellman_forward)."""
    loss, saved = bellman_forward(X, index, y, params["fc1.w"], params["fc1.b"], params["fc2.w"], params["fc2.b"],
                                  identity_rows)
    return loss, lambda g: bellman_backward(saved, g, identity_rows=identity_rows)[3:]
