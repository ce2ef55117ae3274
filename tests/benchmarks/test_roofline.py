"""benchmarks/roofline.py counts one model-step's FLOPs and uses that count for the ensemble too: an ensemble of two
models does exactly twice one model's products (for a study whose ensemble products are batched, not grouped)."""
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_models_count_twice_one_models_flops_and_the_ceiling_is_peak_over_one_models_rate(benchmark_script):
    roofline = benchmark_script("roofline")
    one, two = roofline.step_flops("icl", 1), roofline.step_flops("icl", 2)
    assert one > 0 and two == 2 * one
    assert roofline.peak_gflops(n=128, repeats=1) > 0
