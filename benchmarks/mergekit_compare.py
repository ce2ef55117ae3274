"""theorylab merge against mergekit-yaml, tensor by tensor, on tiny generated checkpoints (no downloads).

For every method of mergekit's task-vector family and each of its parameters, the same YAML is merged by
mergekit (a separate virtual environment) and by ``theorylab.hf.merge_checkpoints``:
- deterministic settings: the max abs difference over all tensors (the bar: <= 1e-6);
- random ones (DARE, DELLA at density < 1; the two tools draw different masks): statistical tests, each
  side against the definition and against the other: keep rates (two-proportion z), DELLA's keep rate per
  magnitude-rank quintile within rows, and the per-tensor L1 rescale (the merged delta keeps ||tau||_1).
Prints a markdown table (BENCHMARKS.md holds a measured one).

    python3 -m venv --system-site-packages /work/venv-mk && /work/venv-mk/bin/pip install --no-deps mergekit==0.1.5 immutables
    PYTHONPATH=. /work/venv-mk/bin/python benchmarks/mergekit_compare.py --mergekit /work/venv-mk/bin/mergekit-yaml --workdir /tmp/mkcmp

BERT goes through mergekit's in-memory ``merge_state_dicts`` (mergekit-yaml 0.1.5 cannot plan BertModel), so
that interpreter must import mergekit; the BERT rows use no gradients or filters (that API takes scalars).
"""
from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hf.conftest import build_family  # noqa: E402
from theorylab.hf import load_state_dict, merge_checkpoints  # noqa: E402


def models(paths, params: list[dict | None], with_base: bool = True) -> list[dict]:
    out = [{"model": str(paths["base"])}] if with_base else []
    for t, p in enumerate(params):
        out.append({"model": str(paths[f"ft{t}"])} | ({"parameters": p} if p else {}))
    return out


def lora_adapter(paths) -> Path:
    """A random non-zero LoRA adapter on a Llama base, saved by peft."""
    import peft
    import transformers

    out = Path(paths["base"]).parent / "lora-adapter"
    if not out.exists():
        torch.manual_seed(1)
        model = transformers.LlamaForCausalLM.from_pretrained(paths["base"])
        cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
        peft.get_peft_model(model, cfg).save_pretrained(out)
    return out


def deterministic_cases(paths, arch: str) -> list[tuple[str, str, dict]]:
    """(method, parameters shown in the table, config)."""
    base = str(paths["base"])
    w = [{"weight": 1.0}, {"weight": 0.5}, {"weight": -0.3}]

    def cfg(method, per_model, params=None, base_model=True, **top):
        c = {"merge_method": method, "models": models(paths, per_model)}
        if base_model:
            c["base_model"] = base
        if params:
            c["parameters"] = params
        return c | {"dtype": "float32"} | top

    dens = [{"weight": 1.0, "density": 0.5}, {"weight": 0.6, "density": 0.3}, {"weight": 0.4, "density": 0.7}]
    cases = [
        ("linear", "weights 1 / 0.5 / -0.3 (base weight 1), normalize", cfg("linear", w, {"weight": 1.0})),
        ("linear", "normalize: false, no base_model (base listed, weight 0.25)", cfg("linear", w, {"normalize": False, "weight": 0.25}, base_model=False)),
        ("task_arithmetic", "weights 1 / 0.5 / -0.3, lambda 0.7", cfg("task_arithmetic", w, {"lambda": 0.7})),
        ("task_arithmetic", "normalize: true, weight filter rules",
         cfg("task_arithmetic", [{"weight": [{"filter": "mlp", "value": 0.2}, {"value": 1.0}]}, {"weight": 0.5}],
             {"normalize": True})),
        ("ties", "density 0.5 / 0.3 / 0.7", cfg("ties", dens)),
        ("ties", "rescale: true (L1)", cfg("ties", dens, {"rescale": True})),
        ("ties", "normalize: false, lambda 0.5, int8_mask", cfg("ties", dens, {"normalize": False, "lambda": 0.5,
                                                                              "int8_mask": True})),
        ("ties", "density gradient [0.2, 0.9], weight gradient [1, 0]",
         cfg("ties", [{"weight": [1.0, 0.0], "density": [0.2, 0.9]}, {"weight": 0.5, "density": 0.5}])),
        ("dare_linear", "density 1", cfg("dare_linear", w)),
        ("dare_ties", "density 1, normalize: true", cfg("dare_ties", w, {"normalize": True})),
        ("breadcrumbs", "density 0.6, gamma 0.05", cfg("breadcrumbs", [{"weight": 1.0, "density": 0.6, "gamma": 0.05},
                                                                         {"weight": 0.5, "density": 0.6, "gamma": 0.05}])),
        ("breadcrumbs", "density 0.5, gamma 0.1, rescale: true",
         cfg("breadcrumbs", [{"weight": 1.0, "density": 0.5}, {"weight": 0.5, "density": 0.5}], {"gamma": 0.1, "rescale": True})),
        ("breadcrumbs_ties", "density 0.6, gamma 0.02, normalize: true",
         cfg("breadcrumbs_ties", dens[:2], {"gamma": 0.02, "normalize": True})),
        ("della", "density 1 (no drop), epsilon 0.1", cfg("della", w, {"epsilon": 0.1})),
        ("della_linear", "density 1, lambda 1.5", cfg("della_linear", w, {"lambda": 1.5})),
        ("sce", "select_topk 1", cfg("sce", [None, None, None])),
        ("sce", "select_topk 0.4", cfg("sce", [None, None, None], {"select_topk": 0.4})),
        ("model_stock", "3 models", cfg("model_stock", [None, None, None])),
        ("model_stock", "filter_wise: true", cfg("model_stock", [None, None, None], {"filter_wise": True})),
        ("ties", "out_dtype bfloat16", cfg("ties", dens, out_dtype="bfloat16")),
    ]
    if arch != "llama":  # the other architectures: one row per method
        keep = {"linear", "task_arithmetic", "ties", "breadcrumbs", "sce", "model_stock"}
        seen, out = set(), []
        for c in cases:
            if c[0] in keep and c[0] not in seen:
                seen.add(c[0])
                out.append(c)
        return out
    return cases + [("task_arithmetic", "a `base+lora` input (PEFT adapter, r 4, alpha 8) and a full fine-tune",
                     {"merge_method": "task_arithmetic", "base_model": base, "dtype": "float32",
                      "models": [{"model": f"{base}+{lora_adapter(paths)}", "parameters": {"weight": 0.5}},
                                 {"model": str(paths["ft0"]), "parameters": {"weight": 1.0}}]})]


def whole_tensor_cases(paths, arch: str) -> list[tuple[str, str, dict]]:
    """slerp and the other whole-tensor methods, layer slices, and half-precision compute."""
    b, a0, a1, a2 = (str(paths[k]) for k in ("base", "ft0", "ft1", "ft2"))
    n = 2  # layers of the tiny models
    mw = lambda ref, x: {"model": ref, "parameters": {"weight": x}}  # noqa: E731
    rules = [{"filter": "attn", "value": [0.0, 0.5, 1.0]}, {"filter": "mlp", "value": [1.0, 0.3]}, {"value": 0.4}]
    dens = [{"model": a0, "parameters": {"weight": 1.0, "density": 0.5}},
            {"model": a1, "parameters": {"weight": 0.6, "density": 0.3}}]
    f32 = {"dtype": "float32"}
    cases = [
        ("slerp", "t filter rules with gradients", {"merge_method": "slerp", "base_model": b, "models": [{"model": b}, {"model": a0}], "parameters": {"t": rules}} | f32),
        ("slerp", "slices (same layers of both), t gradient [0, 1]",
         {"merge_method": "slerp", "base_model": a0, "parameters": {"t": [0.0, 1.0]},
          "slices": [{"sources": [{"model": a0, "layer_range": [0, n]}, {"model": a1, "layer_range": [0, n]}]}]} | f32),
        ("slerp", "dtype bfloat16, t 0.3", {"merge_method": "slerp", "base_model": b, "models": [{"model": a1}], "parameters": {"t": 0.3}, "dtype": "bfloat16"}),
        ("nuslerp", "no base, weights 0.3 / 0.7 (flattened)", {"merge_method": "nuslerp", "models": [mw(a0, 0.3), mw(a1, 0.7)]} | f32),
        ("nuslerp", "base (task vectors), row-wise", {"merge_method": "nuslerp", "base_model": b, "models": [mw(a0, 1.0), mw(a1, 2.0)],
                                                       "parameters": {"nuslerp_flatten": False, "nuslerp_row_wise": True}} | f32),
        ("nuslerp", "nuslerp_flatten: false (per column)", {"merge_method": "nuslerp", "models": [mw(a0, 0.5), mw(a1, 0.5)],
                                                             "parameters": {"nuslerp_flatten": False}} | f32),
        ("multislerp", "base, 3 models, weights 0.3 / 0.5 / 0.2", {"merge_method": "multislerp", "base_model": b,
                                                                    "models": [mw(a0, 0.3), mw(a1, 0.5), mw(a2, 0.2)]} | f32),
        ("multislerp", "no base, normalize_weights: false", {"merge_method": "multislerp", "models": [mw(a0, 1.0), mw(a1, 3.0)],
                                                              "parameters": {"normalize_weights": False}} | f32),
        ("karcher", "3 models, max_iter 20, tol 1e-6", {"merge_method": "karcher", "models": [{"model": a0}, {"model": a1}, {"model": a2}],
                                                        "parameters": {"max_iter": 20, "tol": 1e-6}} | f32),
        ("nearswap", "t 0.02", {"merge_method": "nearswap", "base_model": b, "models": [{"model": a0}], "parameters": {"t": 0.02}} | f32),
        ("arcee_fusion", "base + 1 model", {"merge_method": "arcee_fusion", "base_model": b, "models": [{"model": a0}]} | f32),
        ("passthrough", "slices: 2 + 1 layers from two models, scale 0.5", {"merge_method": "passthrough", "slices": [
            {"sources": [{"model": a0, "layer_range": [0, n]}]},
            {"sources": [{"model": a1, "layer_range": [n - 1, n], "parameters": {"scale": 0.5}}]}]} | f32),
        ("ties", "dtype bfloat16 (computed in bfloat16)", {"merge_method": "ties", "base_model": b, "models": dens, "dtype": "bfloat16"}),
        ("task_arithmetic", "dtype bfloat16, lambda 0.7", {"merge_method": "task_arithmetic", "base_model": b, "dtype": "bfloat16",
                                                           "models": [mw(a0, 1.0), mw(a1, -0.4)], "parameters": {"lambda": 0.7}}),
        ("breadcrumbs_ties", "dtype bfloat16, gamma 0.05", {"merge_method": "breadcrumbs_ties", "base_model": b, "dtype": "bfloat16",
                                                            "models": dens, "parameters": {"gamma": 0.05}}),
        ("sce", "dtype bfloat16, select_topk 0.5", {"merge_method": "sce", "base_model": b, "models": [{"model": a0}, {"model": a1}],
                                                    "parameters": {"select_topk": 0.5}, "dtype": "bfloat16"}),
        ("model_stock", "dtype bfloat16", {"merge_method": "model_stock", "base_model": b, "models": [{"model": a0}, {"model": a1}],
                                           "dtype": "bfloat16"}),
        ("linear", "dtype float16", {"merge_method": "linear", "models": [mw(b, 1.0), mw(a0, 0.5), mw(a1, 0.25)], "dtype": "float16"}),
        ("dare_ties", "dtype bfloat16, density 1", {"merge_method": "dare_ties", "base_model": b, "dtype": "bfloat16",
                                                    "models": [mw(a0, 1.0), mw(a1, 0.5)]}),
        ("della", "dtype bfloat16, density 1", {"merge_method": "della", "base_model": b, "dtype": "bfloat16",
                                                "models": [mw(a0, 1.0), mw(a1, 0.5)]}),
    ]
    if arch != "llama":
        cases = [c for c in cases if "dtype" not in c[1]]
    return cases


# theorylab's own option: the same YAML computed in float32 (the difference mergekit's bf16 arithmetic makes)
FLOAT32_COMPUTE = ("ties", "task_arithmetic", "sce", "slerp")


def random_cases(paths) -> list[tuple[str, str, dict, int]]:
    """(method, parameters, config, number of task vectors)."""
    base = str(paths["base"])
    one = lambda m, p, params=None: {"merge_method": m, "base_model": base, "models": models(paths, p),  # noqa: E731
                                     "dtype": "float32"} | ({"parameters": params} if params else {})
    return [
        ("dare_linear", "1 model, density 0.3", one("dare_linear", [{"weight": 1.0, "density": 0.3}]), 1),
        ("dare_ties", "2 models, density 0.5", one("dare_ties", [{"weight": 1.0, "density": 0.5}, {"weight": 0.7, "density": 0.5}]), 2),
        ("della_linear", "1 model, density 0.4, epsilon 0.2",
         one("della_linear", [{"weight": 1.0, "density": 0.4}], {"epsilon": 0.2}), 1),
        ("della", "2 models, density 0.5, epsilon 0.1",
         one("della", [{"weight": 1.0, "density": 0.5}, {"weight": 1.0, "density": 0.5}], {"epsilon": 0.1}), 2),
    ]


def run_mergekit(exe: str, cfg: dict, out: Path) -> float:
    path = out.with_suffix(".yml")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    res = subprocess.run([exe, str(path), str(out), "--no-copy-tokenizer", "--lora-merge-cache", str(out.parent / "lora-cache")], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"mergekit failed on {path}:\n{res.stderr[-2000:]}")
    return time.time() - t0


def run_mergekit_api(cfg: dict, out: Path) -> float:
    """mergekit's in-memory merge_state_dicts (same merge methods, no architecture planner): used for BERT,
    where mergekit-yaml 0.1.5 stops in its planner (list + tuple of aliases for the optional position_ids)."""
    from mergekit.merge_methods.api import merge_state_dicts

    from theorylab.hf import save_state_dict

    t0 = time.time()
    states = {m["model"]: load_state_dict(m["model"]) for m in cfg["models"]}
    base = cfg.get("base_model")
    if base is not None and base not in states:
        states[base] = load_state_dict(base)
    shared = dict(cfg.get("parameters", {}))
    per_input = {}
    for m in cfg["models"]:
        for k, v in (m.get("parameters") or {}).items():
            per_input.setdefault(k, {})[m["model"]] = v
    for k, values in per_input.items():  # a global value is the default of a per-model one
        default = shared.pop(k, None)
        per_input[k] = {mid: values.get(mid, default) for mid in states if mid != base or k == "weight"}
    merged = merge_state_dicts(states, cfg["merge_method"], parameters=shared | per_input, base=base,
                               dtype=torch.float32)
    save_state_dict(merged, out, overwrite=True)
    return time.time() - t0


def run_theorylab(cfg: dict, out: Path) -> float:
    path = out.with_suffix(".yml")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.time()
    merge_checkpoints(path, out, overwrite=True, progress=False)
    return time.time() - t0


def max_abs_diff(a: dict, b: dict) -> float:
    missing = set(a) ^ set(b)
    if missing:
        raise RuntimeError(f"tensor names differ: {sorted(missing)[:5]}")
    dtypes = [k for k in a if a[k].dtype != b[k].dtype]
    if dtypes:
        raise RuntimeError(f"dtypes differ: {dtypes[0]}: {a[dtypes[0]].dtype} vs {b[dtypes[0]].dtype}")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def _matrices(base: dict) -> list[str]:
    return [k for k, v in base.items() if v.is_floating_point() and v.dim() == 2 and v.numel() >= 1000]


def keep_stats(merged: dict, base: dict, tau: dict | None) -> dict:
    """Kept entries (merged != base) over the larger matrices; with one task vector also the L1 ratio
    ||merged - base||_1 / ||tau||_1 per tensor and the keep rate per within-row magnitude-rank quintile."""
    kept = n = 0
    ratios, bins_kept, bins_n = [], torch.zeros(5), torch.zeros(5)
    for k in _matrices(base):
        d = merged[k].double() - base[k].double()
        nz = d != 0
        kept, n = kept + int(nz.sum()), n + nz.numel()
        if tau is not None:
            ratios.append(float(d.abs().sum() / tau[k].double().abs().sum()))
            rank = tau[k].abs().argsort(1).argsort(1).double() / (tau[k].shape[1] - 1)
            q = (rank * 5).clamp(max=4.999).long()
            bins_kept += torch.bincount(q[nz], minlength=5).double()[:5].float()
            bins_n += torch.bincount(q.reshape(-1), minlength=5).double()[:5].float()
    return {"rate": kept / n, "n": n, "l1_ratio": ratios, "bins": (bins_kept / bins_n).tolist(), "bins_n": bins_n.tolist()}


def z_two(p1: float, p2: float, n: int) -> float:
    p = (p1 + p2) / 2
    se = math.sqrt(2 * p * (1 - p) / n) if 0 < p < 1 else 1.0
    return (p1 - p2) / se


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mergekit", default="/work/venv-mk/bin/mergekit-yaml")
    ap.add_argument("--workdir", default="/tmp/mkcmp")
    ap.add_argument("--archs", default="llama,gpt2,bert")
    ap.add_argument("--skip-random", action="store_true")
    ap.add_argument("--only", choices=("task-vector", "whole-tensor"),
                    help="run one group of deterministic rows (default: both)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    rows = ["| arch | method | parameters | max abs diff vs mergekit | result |", "|---|---|---|---|---|"]
    for arch in args.archs.split(","):
        paths = build_family(work / "models", arch, n_tasks=3)
        cases = ((deterministic_cases(paths, arch) if args.only != "whole-tensor" else [])
                 + (whole_tensor_cases(paths, arch) if arch != "bert" and args.only != "task-vector" else []))
        for i, (method, desc, cfg) in enumerate(cases):
            mk, ours = work / f"{arch}-{i}-mergekit", work / f"{arch}-{i}-theorylab"
            if arch == "bert":
                run_mergekit_api(cfg, mk)
            else:
                run_mergekit(args.mergekit, cfg, mk)
            run_theorylab(cfg, ours)
            diff = max_abs_diff(load_state_dict(ours), load_state_dict(mk))
            ok = diff <= 1e-6
            rows.append(f"| {arch} | {method} | {desc} | {diff:.2e} | {'same' if ok else '**differs**'} |")
            print(rows[-1], flush=True)
            if cfg.get("dtype") in ("bfloat16", "float16") and method in FLOAT32_COMPUTE:
                run_theorylab(cfg | {"compute_dtype": "float32"}, ours)
                diff = max_abs_diff(load_state_dict(ours), load_state_dict(mk))
                rows.append(f"| {arch} | {method} | {desc}, theorylab `compute_dtype: float32` | {diff:.2e} | "
                            "differs by design (float32 arithmetic) |")
                print(rows[-1], flush=True)
    if not args.skip_random:
        rows += ["", "| arch | method | parameters | statistic | theorylab | mergekit | expected | test |",
                 "|---|---|---|---|---|---|---|---|"]
        paths = build_family(work / "models", "llama", n_tasks=3)
        base = load_state_dict(paths["base"])
        tau = {k: v.double() - base[k].double() for k, v in load_state_dict(paths["ft0"]).items() if v.is_floating_point()}
        for i, (method, desc, cfg, n_tasks) in enumerate(random_cases(paths)):
            mk, ours = work / f"random-{i}-mergekit", work / f"random-{i}-theorylab"
            run_mergekit(args.mergekit, cfg, mk)
            run_theorylab(cfg, ours)
            s_mk = keep_stats(load_state_dict(mk), base, tau if n_tasks == 1 else None)
            s_us = keep_stats(load_state_dict(ours), base, tau if n_tasks == 1 else None)
            d = cfg["models"][1]["parameters"]["density"]
            expected = d if n_tasks == 1 else 1 - (1 - d) ** 2  # an entry survives if any task keeps it
            z = z_two(s_us["rate"], s_mk["rate"], s_us["n"])
            rows.append(f"| llama | {method} | {desc} | kept fraction (n={s_us['n']}) | {s_us['rate']:.4f} | "
                        f"{s_mk['rate']:.4f} | {expected:.4f} | z = {z:+.2f} ({'pass' if abs(z) < 4 else 'FAIL'}) |")
            print(rows[-1], flush=True)
            if n_tasks == 1:
                for name, s in (("theorylab", s_us), ("mergekit", s_mk)):
                    dev = max(abs(r - 1) for r in s["l1_ratio"])
                    rows.append(f"| llama | {method} | {desc} | max over tensors of abs(L1 ratio - 1), {name} | "
                                f"{dev:.1e} |  | 0 | {'pass' if dev < 1e-5 else 'FAIL'} |")
                if "epsilon" in cfg.get("parameters", {}):
                    eps = cfg["parameters"]["epsilon"]
                    centres = [d - eps + 2 * eps * (q + 0.5) / 5 for q in range(5)]
                    nb = min(s_us["bins_n"])
                    zs = [z_two(a, b, int(nb)) for a, b in zip(s_us["bins"], s_mk["bins"])]
                    rows.append(f"| llama | {method} | {desc} | keep rate by magnitude-rank quintile | "
                                f"{' / '.join(f'{x:.3f}' for x in s_us['bins'])} | {' / '.join(f'{x:.3f}' for x in s_mk['bins'])} | "
                                f"{' / '.join(f'{x:.3f}' for x in centres)} | max abs z = {max(map(abs, zs)):.2f} "
                                f"({'pass' if max(map(abs, zs)) < 4 else 'FAIL'}) |")
            print("\n".join(rows[-3:]), flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
