"""The one dispatch point of the KV cache's kernels (rotaquant.kv.backend)."""

import pytest
import torch

from rotaquant import _gpu
from rotaquant.kv import backend

CPU = torch.device("cpu")


def test_cpu_tensors_use_the_native_kernels_unless_autograd_records(monkeypatch):
    monkeypatch.delenv(backend.ENV, raising=False)
    assert backend.choose(CPU) == "native"
    assert backend.choose(CPU, recording=True) == "torch"


def test_cuda_tensors_use_triton_where_it_runs_else_torch(monkeypatch):
    monkeypatch.delenv(backend.ENV, raising=False)
    cuda = torch.device("cuda")
    expected = "triton" if _gpu.triton_runs_on("cuda") else "torch"
    assert backend.choose(cuda) == expected
    assert backend.available(torch.device("meta")) == ["torch"]


def test_forcing_a_backend(monkeypatch):
    monkeypatch.setenv(backend.ENV, "torch")
    assert backend.choose(CPU) == "torch"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv(backend.ENV, "triton")
    if _gpu.triton_version() is not None:
        assert backend.choose(CPU) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # Triton on CPU tensors needs the interpreter
    with pytest.raises(RuntimeError, match="cannot run on cpu"):
        backend.choose(CPU)
    monkeypatch.setenv(backend.ENV, "cuda")
    with pytest.raises(ValueError, match="must be one of"):
        backend.choose(CPU)


def test_show_config_names_the_kv_backends(capsys):
    import rotaquant as rq

    rq.show_config()
    text = capsys.readouterr().out
    assert "KV cache on CPU tensors: native kernels" in text
    assert "ROTAQUANT_KV_BACKEND" in text
