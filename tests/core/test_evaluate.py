"""Block-keyed evaluation: a model's numbers do not depend on how many models are evaluated with it."""
import torch

from theorylab.core.evaluate import blocks, mean_over_blocks
from theorylab.core.rng import EnsembleRNG


def test_blocks_cover_n_with_a_fixed_block_size():
    assert blocks(1200, 500) == [(0, 500), (1, 500), (2, 200)]
    assert sum(c for _, c in blocks(7, 3)) == 7


def test_means_do_not_depend_on_the_models_evaluated_together_or_on_memory():
    rng = EnsembleRNG(list(range(11)))

    def fn(models, i, count):  # draws keyed by (model key, block index)
        x = rng.subset(models).uniform((count,), "test", i)
        return {"mean": x.mean(-1), "sq": (x**2).mean(-1)}

    big = mean_over_blocks(11, 1234, 10, fn, block=100)
    sliced = mean_over_blocks(11, 1234, 10, fn, block=100, max_elements=2000)  # 2 models at a time
    alone = mean_over_blocks(1, 1234, 10, lambda m, i, c: fn(slice(4, 5), i, c), block=100)
    torch.testing.assert_close(big["mean"], sliced["mean"], atol=1e-6, rtol=0)
    torch.testing.assert_close(big["mean"][4:5], alone["mean"], atol=1e-6, rtol=0)
    assert abs(float(big["mean"].mean()) - 0.5) < 0.02
