import re

import pytest
import torch
import typer
from typer.testing import CliRunner

from theorylab.edit import TaskVector
from theorylab.hf import load_state_dict, relate_checkpoints, save_state_dict
from theorylab.hf.cli import register


@pytest.fixture(scope="module")
def related(family, tmp_path_factory):
    """A = base + d; aligned = base + d + small noise; opposite = base - d; unrelated = base + independent d2."""
    paths = family("gpt2")
    root = tmp_path_factory.mktemp("related")
    base = load_state_dict(paths["base"])
    # small edits (0.05 of the family's perturbation) keep the outputs in the near-linear regime
    d = 0.05 * TaskVector(base, load_state_dict(paths["ft0"]))
    d2 = 0.05 * TaskVector(base, load_state_dict(paths["ft1"]))
    noise = TaskVector(vector={k: 0.3 * 0.05 * 0.05 * torch.randn_like(v) for k, v in d.items()})
    out = {"base": paths["base"]}
    for name, tv in (("A", d), ("aligned", d + noise), ("opposite", -d), ("unrelated", d2)):
        out[name] = save_state_dict(tv.apply_to(base), root / name, support_from=paths["base"])
    return out


@pytest.mark.parametrize("other, relation, sign", [("aligned", "aligned", 1), ("opposite", "contradictory", -1),
                                                   ("unrelated", "irrelevant", 0)])
def test_relation_from_task_vector_cosines(related, other, relation, sign):
    rep = relate_checkpoints(related["A"], related[other], related["base"])
    assert rep.recommendation.relation == relation
    overall = rep.cosines["overall"]
    assert (overall > 0.9) if sign > 0 else (overall < -0.99) if sign < 0 else abs(overall) < 0.1
    assert {"layer 0", "layer 1", "other"} <= set(rep.cosines)


def test_relate_cli_with_probe_inputs(related, tmp_path):
    probes = tmp_path / "probes.pt"
    torch.save({"input_ids": torch.randint(0, 96, (8, 6))}, probes)
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["relate", str(related["A"]), str(related["opposite"]), "--base", str(related["base"]),
                                   "--probe-inputs", str(probes)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # rich wraps lines to the terminal width
    centred = float(re.search(r"centred on base ([+-][\d.]+)", text).group(1))
    assert centred < -0.5  # negated weights move the outputs (roughly) the opposite way
    assert "contradictory" in text and "negate" in text
    bad = CliRunner().invoke(app, ["relate", str(related["A"]), str(tmp_path / "nope"), "--base", str(related["base"])])
    assert bad.exit_code == 2 and "does not exist" in " ".join(bad.output.split())


def test_relate_refuses_probe_inputs_the_fine_tune_does_not_change(family, tmp_path):
    """A fine-tune that changed only an embedding row no probe input uses: the weights differ, the outputs on the
    probes are the base's exactly, so a centred alpha-hat would be 0/0 (reported as 'irrelevant' before)."""
    paths = family("bert")
    base = load_state_dict(paths["base"])
    edited = {k: v.clone() for k, v in base.items()}
    edited["embeddings.word_embeddings.weight"][95] += 1.0
    a = save_state_dict(edited, tmp_path / "a", support_from=paths["base"])
    probes = tmp_path / "probes.pt"
    torch.save({"input_ids": torch.randint(0, 90, (4, 6))}, probes)
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["relate", str(a), str(paths["ft0"]), "--base", str(paths["base"]),
                                   "--probe-inputs", str(probes)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "MODEL_A: outputs on the probe inputs equal BASE's" in lines[0], res.output
