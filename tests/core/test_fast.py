import warnings

import pytest
import torch

from theorylab.core import fast


def test_compile_mode_reads_the_environment_and_refuses_other_values(monkeypatch):
    monkeypatch.delenv("THEORYLAB_COMPILE", raising=False)
    assert fast.compile_mode() == "auto"
    assert fast.worth_compiling(60.0) and not fast.worth_compiling(1.0)
    monkeypatch.setenv("THEORYLAB_COMPILE", "0")
    assert not fast.worth_compiling(1e9)
    monkeypatch.setenv("THEORYLAB_COMPILE", "1")
    assert fast.worth_compiling(0.0)
    monkeypatch.setenv("THEORYLAB_COMPILE", "yes")
    with pytest.raises(ValueError, match="THEORYLAB_COMPILE must be one of auto, 0, 1"):
        fast.compile_mode()


def test_a_function_that_cannot_be_compiled_runs_eagerly_after_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    f = fast.CompiledOrEager(lambda x: x * 2, "doubling")
    with pytest.warns(RuntimeWarning, match="torch.compile of doubling failed .*no C\\+\\+ compiler found"):
        assert torch.equal(f(torch.ones(3)), torch.full((3,), 2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only one warning
        assert torch.equal(f(torch.ones(2)), torch.full((2,), 2.0))
    assert f.failed.startswith("RuntimeError: no C++ compiler found")


def test_an_error_of_the_function_itself_still_surfaces(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    f = fast.CompiledOrEager(lambda x: x.reshape(7), "reshape")
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="shape"):
        f(torch.ones(3))
