import os

import pytest
import torch
from safetensors.torch import load_file

from theorylab.hf import CheckpointReader, SafetensorsFile, SafetensorsWriter, TensorInfo, load_state_dict, save_state_dict
from theorylab.hf import safetensors_io

MIXED = {"a": torch.randn(5, 3), "h": torch.randn(4, 2).half(), "bf": torch.randn(3, 3).bfloat16(),
         "i": torch.arange(6).reshape(2, 3), "flag": torch.tensor([True, False, True]), "s": torch.tensor(2.5),
         "d": torch.randn(2, 2, dtype=torch.float64)}


def test_safetensors_writer_output_is_valid_and_reader_roundtrips(tmp_path):
    path = tmp_path / "x.safetensors"
    w = SafetensorsWriter(path, [TensorInfo(k, tuple(v.shape), v.dtype) for k, v in MIXED.items()])
    for k, v in MIXED.items():
        if v.dim() >= 1 and v.shape[0] > 2:  # row blocks, as the streaming merge writes them
            w.write(k, v[:2])
            w.write(k, v[2:])
        else:
            w.write(k, v)
    w.close()
    ref = load_file(path)  # the official library accepts the file
    with SafetensorsFile(path) as f:
        for k, v in MIXED.items():
            assert ref[k].dtype == v.dtype and torch.equal(ref[k], v)
            assert torch.equal(f.read(k), v)
        assert torch.equal(f.read_rows("a", 1, 4), MIXED["a"][1:4])


def test_writer_refuses_out_of_order_and_incomplete(tmp_path):
    w = SafetensorsWriter(tmp_path / "y.safetensors", [TensorInfo("a", (2,), torch.float32), TensorInfo("b", (1,), torch.float32)])
    with pytest.raises(ValueError, match="expected tensor 'a'"):
        w.write("b", torch.zeros(1))
    w.write("a", torch.zeros(2))
    with pytest.raises(ValueError, match="'b' was never"):
        w.close()


def test_sharded_roundtrip_and_transformers_loads_it(tmp_path, family):
    import transformers

    paths = family("llama")
    sd = load_state_dict(paths["base"])
    out = save_state_dict(sd, tmp_path / "sharded", support_from=paths["base"], max_shard_bytes=20_000)
    shards = sorted(p.name for p in out.iterdir() if p.suffix == ".safetensors")
    assert len(shards) > 2 and (out / "model.safetensors.index.json").exists() and (out / "config.json").exists()
    back = load_state_dict(out)
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    model = transformers.LlamaForCausalLM.from_pretrained(out)
    ref = transformers.LlamaForCausalLM.from_pretrained(paths["base"])
    x = torch.randint(0, 96, (1, 5))
    torch.testing.assert_close(model(x).logits, ref(x).logits)


def test_pytorch_model_bin_is_read(tmp_path):
    folder = tmp_path / "binmodel"
    folder.mkdir()
    sd = {"w": torch.randn(6, 4), "b": torch.randn(6).half(), "n": torch.arange(3)}
    torch.save(sd, folder / "pytorch_model.bin")
    with CheckpointReader(folder) as r:
        assert r.names == ["w", "b", "n"]
        assert r.info("b").dtype == torch.float16
        assert torch.equal(r.read_rows("w", 2, 5), sd["w"][2:5])
        assert all(torch.equal(r.read(k), v) for k, v in sd.items())


def test_failure_mid_write_leaves_no_folder(tmp_path, monkeypatch):
    sd = {f"t{i}": torch.randn(100) for i in range(6)}
    calls = {"n": 0}
    real = safetensors_io.SafetensorsWriter.write

    def failing(self, name, block):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full (injected)")
        return real(self, name, block)

    monkeypatch.setattr(safetensors_io.SafetensorsWriter, "write", failing)
    with pytest.raises(OSError, match="injected"):
        save_state_dict(sd, tmp_path / "out", max_shard_bytes=1000)
    assert os.listdir(tmp_path) == []  # neither the target nor the temporary folder
    monkeypatch.undo()
    save_state_dict(sd, tmp_path / "out")
    with pytest.raises(FileExistsError, match="already exists"):
        save_state_dict(sd, tmp_path / "out")
    save_state_dict({"t0": torch.zeros(3)}, tmp_path / "out", overwrite=True)
    assert list(load_state_dict(tmp_path / "out")) == ["t0"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_missing_model_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        CheckpointReader(tmp_path)
