"""theorylab extract-lora against mergekit-extract-lora 0.1.5 on tiny generated checkpoints (no downloads).

For each setting both tools extract an adapter from the same fine-tune at the same rank; peft loads each on
the base, and the table gives the adapted model's logit error against the fine-tune relative to the base's
(||logits(adapted) - logits(ft)|| / ||logits(base) - logits(ft)||: 0 is the fine-tune, 1 no better than the
base), the largest difference between the two tools' LoRA products B A on the matrices both factor, and how
far a ``base+adapter`` input of ``theorylab merge`` lands from peft's merge_and_unload (the round trip).
The "LoRA only" row is what extract-lora wrote before modules_to_save (norms and embeddings dropped).

    python3 -m venv --system-site-packages /work/venv-mk-lora && /work/venv-mk-lora/bin/pip install --no-deps mergekit==0.1.5 immutables
    PYTHONPATH=. python3 benchmarks/lora_compare.py --mergekit /work/venv-mk-lora/bin/mergekit-extract-lora --workdir /tmp/loracmp
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hf.conftest import MODEL_CLASSES, build_family  # noqa: E402
from theorylab.hf import load_state_dict, merge_checkpoints, parse_config, read_adapter  # noqa: E402
from theorylab.hf.lora_extract import extract_lora  # noqa: E402


def outputs(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def adapted(cls, base: Path, adapter: Path):
    import peft

    return peft.PeftModel.from_pretrained(cls.from_pretrained(base), adapter).eval()


def relative_error(cls, paths, adapter: Path, ids) -> float:
    ft = outputs(cls.from_pretrained(paths["ft0"]).eval(), ids)
    base = outputs(cls.from_pretrained(paths["base"]).eval(), ids)
    return float((outputs(adapted(cls, paths["base"], adapter), ids) - ft).norm() / (base - ft).norm())


def round_trip(cls, paths, adapter: Path, work: Path) -> float:
    """max |theorylab merge of base+adapter - peft merge_and_unload| over all tensors."""
    out = work / f"merged-{adapter.name}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"merge_method": "task_arithmetic", "base_model": str(paths["base"]),
           "models": [{"model": f"{paths['base']}+{adapter}", "parameters": {"weight": 1.0}}]}
    merge_checkpoints(parse_config(cfg), out, progress=False)
    ours = load_state_dict(out)
    peft_merged = adapted(cls, paths["base"], adapter).merge_and_unload().state_dict()
    return max(float((ours[k] - peft_merged[k]).abs().max()) for k in ours)


def product_difference(ours: Path, theirs: Path) -> tuple[float, int]:
    a, b = read_adapter(ours).factors, read_adapter(theirs).factors
    common = sorted(set(a) & set(b))
    diff = max((float((a[k].delta_rows(0, a[k].shape[0]) - b[k].delta_rows(0, b[k].shape[0])).abs().max())
                for k in common), default=float("nan"))
    return diff, len(common)


def low_rank_fine_tune(paths, root: Path, rank: int) -> dict[str, Path]:
    """A fine-tune whose matrices moved by rank-``rank`` updates (as a LoRA-trained model's do) while its norms
    and embeddings moved freely: the setting where saving the modules LoRA cannot hold matters most."""
    from theorylab.hf import save_state_dict

    base, ft = load_state_dict(paths["base"]), load_state_dict(paths["ft0"])
    g = torch.Generator().manual_seed(7)
    out = {}
    for k, b in base.items():
        if b.dim() == 2 and "embed" not in k and "lm_head" not in k:
            u = torch.randn(b.shape[0], rank, generator=g) * 0.05
            out[k] = b + u @ torch.randn(rank, b.shape[1], generator=g)
        else:
            out[k] = ft[k]
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(paths["base"], root / "base", dirs_exist_ok=True)
    save_state_dict(out, root / "ft0", support_from=paths["base"], overwrite=True)
    return {"base": root / "base", "ft0": root / "ft0"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mergekit", required=True, help="mergekit-extract-lora executable (mergekit 0.1.5)")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--rank", type=int, default=8)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import transformers

    args.workdir.mkdir(parents=True, exist_ok=True)
    ids = torch.arange(24).reshape(2, 12) % 90
    print("| arch | setting | rank | logit error / base's: theorylab | mergekit | max abs diff of B A (matrices) "
          "| round trip via base+adapter: theorylab | mergekit |")
    print("|---|---|---|---|---|---|---|---|")
    cases = (("llama", "llama", ["default", "embed-lora", "LoRA only"]),
             ("llama, low-rank fine-tune", "llama", ["default", "LoRA only"]), ("gpt2", "gpt2", ["default"]))
    for label, arch, settings in cases:
        paths = build_family(args.workdir / "models", arch, n_tasks=1)
        if "low-rank" in label:
            paths = low_rank_fine_tune(paths, args.workdir / "models-lowrank", args.rank // 2)
        cls = getattr(transformers, MODEL_CLASSES[arch])
        for setting in settings:
            tag = f"{label}-{setting}".replace(" ", "-").replace(",", "")
            ours, theirs = args.workdir / f"tl-{tag}", args.workdir / f"mk-{tag}"
            kw = {"embed-lora": {"embeddings": True},
                  "LoRA only": {"embeddings": True, "skip_undecomposable": True, "exclude": ["embed_tokens"]}}
            extract_lora(paths["ft0"], paths["base"], ours, rank=args.rank, overwrite=True, **kw.get(setting, {}))
            mk_flags = {"default": [], "embed-lora": ["--embed-lora"], "LoRA only": None}[setting]
            tl_err, tl_rt = relative_error(cls, paths, ours, ids), round_trip(cls, paths, ours, args.workdir)
            mk_err = mk_rt = diff = None
            failed = None
            if mk_flags is not None:
                shutil.rmtree(theirs, ignore_errors=True)
                run = subprocess.run([args.mergekit, "--model", str(paths["ft0"]), "--base-model", str(paths["base"]),
                                      "--out-path", str(theirs), "--max-rank", str(args.rank), *mk_flags],
                                     capture_output=True, text=True)
                if run.returncode != 0:
                    failed = run.stderr.strip().splitlines()[-1]
                else:
                    mk_err, mk_rt = relative_error(cls, paths, theirs, ids), round_trip(cls, paths, theirs, args.workdir)
                    diff = product_difference(ours, theirs)
            fmt = lambda x: "" if x is None else f"{x:.4g}"
            fmt_e = lambda x: "" if x is None else f"{x:.1e}"
            diff_s = "" if diff is None else f"{diff[0]:.1e} ({diff[1]})"
            mk_s = f"fails: `{failed}`" if failed else fmt(mk_err)
            print(f"| {label} | {setting} | {args.rank} | {fmt(tl_err)} | {mk_s} | {diff_s} | {fmt_e(tl_rt)} "
                  f"| {fmt_e(mk_rt)} |", flush=True)


if __name__ == "__main__":
    main()
