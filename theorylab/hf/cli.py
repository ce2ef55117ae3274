"""``theorylab merge`` and ``theorylab relate``; the main CLI calls ``register(app)``."""
from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .config import ConfigError


def _error(console: Console, err: BaseException) -> None:
    """One line ``error: <message>`` (no markup parsing, no wrapping), exit code 2."""
    msg = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in msg:
        msg = f"{err.filename}: {msg}"
    console.print(Text.assemble(("error:", "red"), " ", msg), soft_wrap=True)
    raise typer.Exit(code=2)


def parse_size(text: str) -> int:
    """'2GB', '500MB', '1.5GiB' or a byte count -> bytes."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?i?B?)?\s*", text, re.IGNORECASE)
    if not m:
        raise typer.BadParameter(f"shard size must look like 2GB, 500MB or a byte count, got {text!r}")
    unit = (m.group(2) or "B").upper().replace("I", "").rstrip("B") or "B"
    return int(float(m.group(1)) * {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[unit])


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (PyYAML keeps the last one silently) and anchors/aliases."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
        if dup is not None:
            raise ConfigError(f"line {node.start_mark.line + 1}: key {dup!r} is given twice")
        return super().construct_mapping(node, deep=deep)


PER_MODEL_NUMBERS = ("weight", "density", "gamma", "epsilon", "lambda", "select_topk")


def precheck_merge_config(path: Path) -> None:
    """What the merge config's schema lets through but no merge means (checked before any tensor is read): a
    pipe as the config, duplicate keys, booleans as numbers, weights that normalize by 0, a density/select_topk
    of 0 (the merge would silently return the base), LwPTV given both ratio and threshold."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # stat, not open: a FIFO would block forever
        raise ConfigError(f"{path} is not a regular file (a pipe, socket or device)")
    text = path.read_text()
    try:
        if any(isinstance(t, (yaml.AnchorToken, yaml.AliasToken)) for t in yaml.scan(text)):
            raise ConfigError(f"{path}: YAML anchors and aliases (&, *) are not accepted in a merge config")
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError:
        return  # load_config reports it with its own message
    if not isinstance(data, dict):
        return

    def walk(obj, where):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in PER_MODEL_NUMBERS and (isinstance(v, bool) or (isinstance(v, list) and any(isinstance(x, bool) for x in v))):
                    raise ConfigError(f"{where}{k}: takes a number, not true/false (got {v!r})")
                walk(v, f"{where}{k}.")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{where[:-1]}[{i}].")

    walk(data, "")
    # only well-shaped parts are read here: a wrong shape is load_config's to report, with its own message
    params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    models = [m for m in data.get("models") or [] if isinstance(m, dict)] if isinstance(data.get("models"), list) else []
    method = data.get("merge_method")
    per_model = [m["parameters"] if isinstance(m.get("parameters"), dict) else {} for m in models]
    if method == "linear" and params.get("normalize", True) is True and models:
        weights = [p.get("weight", 1.0) for p in per_model]
        if all(isinstance(w, (int, float)) for w in weights) and abs(sum(weights)) < 1e-12:
            raise ConfigError(f"linear with normalize: the weights sum to 0 ({weights}); normalizing divides by it")
    for i, p in enumerate([params, *per_model]):
        where = "parameters" if i == 0 else f"models[{i - 1}].parameters"
        if p.get("density") == 0:
            raise ConfigError(f"{where}.density: 0 keeps no entry of the task vector, so the merge is the base model; "
                              "give a density in (0, 1]")
        if method == "sce" and p.get("select_topk") == 0:
            raise ConfigError(f"{where}.select_topk: 0 selects nothing, so the merge is the base model; give (0, 1]")
    lw = params.get("lwptv")
    if isinstance(lw, dict) and lw.get("ratio") is not None and lw.get("threshold") is not None:
        raise ConfigError("parameters.lwptv: give ratio or threshold, not both (they are two ways to choose the pruned blocks)")


def merge(config: Annotated[Path, typer.Argument(help="mergekit-style YAML config", exists=True, dir_okay=False)],
          out_dir: Annotated[Path, typer.Argument(help="output folder (written atomically)")],
          overwrite: Annotated[bool, typer.Option(help="replace an existing output folder")] = False,
          max_shard_size: Annotated[str, typer.Option(help="largest output shard, e.g. 2GB")] = "2GB",
          progress: Annotated[bool, typer.Option(help="show a progress bar over tensors")] = True) -> None:
    """Merge checkpoints per a mergekit-style YAML: the task-vector family (linear, task_arithmetic, ties, dare_*,
    breadcrumbs*, della*, sce, model_stock), slerp, nuslerp, multislerp, karcher, nearswap, arcee_fusion and
    passthrough with slices; tokenizer_source / tokenizer as mergekit."""
    from .merge import merge_checkpoints

    console = Console()
    try:
        precheck_merge_config(config)
        report = merge_checkpoints(config, out_dir, max_shard_bytes=parse_size(max_shard_size), overwrite=overwrite,
                                   progress=progress, console=Console(stderr=True))
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError, OSError) as err:
        _error(console, err)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(report.table())
    for (i, j), cos in report.cosines().items():
        if cos is not None:
            console.print(f"cosine of task vectors {report.labels[i]} / {report.labels[j]}: {cos:+.4f}")
    console.print(f"wrote {report.n_tensors} tensors, mergekit_config.yml and a model card to {report.out_dir}")


def relate(model_a: Annotated[Path, typer.Argument(help="fine-tuned model A (the task to keep)")],
           model_b: Annotated[Path, typer.Argument(help="fine-tuned model B (the task to add or negate)")],
           base: Annotated[Path, typer.Option("--base", help="the common pre-trained model")],
           probe_inputs: Annotated[Optional[Path], typer.Option(help=".txt (one input per line), .pt or .safetensors with input_ids")] = None,
           tolerance: Annotated[float, typer.Option(help="|alpha| below this counts as irrelevant")] = 0.1) -> None:
    """Estimate the task relation of two fine-tuned models and recommend add vs negate and a lambda range."""
    from .relate import relate_checkpoints

    console = Console()
    if not (math.isfinite(tolerance) and 0 <= tolerance < 1):
        _error(console, ValueError(f"--tolerance must be a number in [0, 1) (got {tolerance})"))
    try:
        rep = relate_checkpoints(model_a, model_b, base, probe_inputs, tolerance=tolerance)
    except (FileNotFoundError, ValueError, OSError) as err:
        _error(console, err)
    t = Table(title="cosine of task vectors")
    t.add_column("layer")
    t.add_column("cosine", justify="right")
    for g, c in rep.cosines.items():
        t.add_row(g, f"{c:+.4f}")
    console.print(t)
    if rep.alpha_hat_centred is not None:
        console.print(f"alpha-hat on probe inputs: raw {rep.alpha_hat_raw:+.4f}, centred on base {rep.alpha_hat_centred:+.4f}")
    r = rep.recommendation
    fmt = lambda rng: "not advised" if rng is None else f"[{rng[0]:.2f}, {rng[1]:.2f}]"
    console.print(f"relation: [bold]{r.relation}[/bold] (alpha = {r.alpha:+.3f})")
    console.print(f"add  (base + tau_A + lam tau_B): lam in {fmt(r.add_lambda)}")
    console.print(f"negate (unlearn B, keep A):      lam in {fmt(r.negate_lambda)}")
    console.print(f"guidance (one-layer theory, Thms 4-6; validate on your data): {r.advice}")


def extract_lora(finetuned: Annotated[Path, typer.Argument(help="fine-tuned model folder")],
                 out_dir: Annotated[Path, typer.Argument(help="adapter folder to write (atomically)")],
                 base: Annotated[str, typer.Option("--base", help="the pre-trained model the task vector is taken "
                                                   "against (recorded as given in base_model_name_or_path)")],
                 rank: Annotated[Optional[int], typer.Option("--rank", "--max-rank", help="singular values kept per matrix")] = None,
                 energy: Annotated[Optional[float], typer.Option(help="fraction of each matrix's squared norm kept (0, 1]")] = None,
                 sv_epsilon: Annotated[float, typer.Option(help="also drop singular values <= this (mergekit's --sv-epsilon)")] = 0.0,
                 embeddings: Annotated[bool, typer.Option("--embeddings/--no-embeddings", "--embed-lora/--no-embed-lora",
                                                          help="write embeddings and the LM head as LoRA factors "
                                                          "(default: saved whole when changed)")] = False,
                 save_module: Annotated[Optional[list[str]], typer.Option(help="module saved whole (full name or last "
                                                                          "part, e.g. lm_head); repeatable")] = None,
                 include: Annotated[Optional[list[str]], typer.Option(help="regex on module names: only those matching; repeatable")] = None,
                 exclude: Annotated[Optional[list[str]], typer.Option(help="regex on module names: skip those matching; repeatable")] = None,
                 skip_undecomposable: Annotated[bool, typer.Option(help="leave changed norms etc. out instead of saving them whole")] = False,
                 overwrite: Annotated[bool, typer.Option(help="replace an existing output folder")] = False) -> None:
    """Write the task vector FINETUNED - BASE as a PEFT LoRA adapter (--rank r or --energy f): low-rank factors
    for Linear/Conv1D weights, modules LoRA cannot carry (norms, embeddings, LM head) saved whole if changed."""
    from .lora_extract import extract_lora as run

    console = Console()
    for name, patterns in (("--include", include), ("--exclude", exclude)):
        for pattern in patterns or ():
            try:
                re.compile(pattern)
            except re.error as e:
                _error(console, ValueError(f"{name} {pattern!r} is not a valid regular expression ({e})"))
    if rank is not None and not 1 <= rank <= 65536:
        _error(console, ValueError(f"--rank must be in [1, 65536] (got {rank})"))
    if energy is not None and not (math.isfinite(energy) and 0 < energy <= 1):
        _error(console, ValueError(f"--energy must be in (0, 1] (got {energy})"))
    try:
        rep = run(finetuned, base, out_dir, rank=rank, energy=energy, sv_epsilon=sv_epsilon, embeddings=embeddings,
                  save_modules=save_module or (), include=include, exclude=exclude,
                  skip_undecomposable=skip_undecomposable, overwrite=overwrite)
    except (FileExistsError, FileNotFoundError, ValueError, OSError) as err:
        _error(console, err)
    t = Table(title=f"kept energy per matrix ({rep.out_dir.name})")
    for col in ("module", "rank kept / full", "kept energy"):
        t.add_column(col, justify="left" if col == "module" else "right")
    for m in rep.energy:
        t.add_row(m, f"{rep.ranks.get(m, 0)} / {rep.full_rank[m]}", f"{rep.energy[m]:.4f}")
    console.print(t)
    if rep.capped:
        module, full = next(iter(rep.capped.items()))
        console.print(f"[yellow]note:[/yellow] --rank {rank} is above the full rank of {len(rep.capped)} of "
                      f"{len(rep.full_rank)} matrices; they keep their full rank (e.g. {module}: {full})",
                      soft_wrap=True)
    for note in rep.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    total = rep.total_sq or 1.0
    if rep.saved_whole:
        modules = sorted({n.rsplit(".", 1)[0] for n in rep.saved_whole})
        console.print(f"saved whole (modules_to_save): {len(modules)} modules holding "
                      f"{sum(rep.saved_whole.values()) / total:.2%} of ||tau||^2, e.g. {modules[0]}")
    if rep.lora_bias:
        console.print(f"lora_bias: {len(rep.lora_bias)} changed biases carried exactly")
    if rep.not_carried:
        share = sum(rep.not_carried.values()) / total
        console.print(f"[yellow]note:[/yellow] {len(rep.not_carried)} changed tensors are not carried (excluded, "
                      f"skipped or unowned) and hold {share:.2%} of ||tau||^2; e.g. {next(iter(rep.not_carried))}")
    console.print(f"carried: {rep.carried_fraction:.2%} of ||tau||^2 (task_type {rep.task_type}); wrote {rep.out_dir}")


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
    app.command("relate")(relate)
    app.command("extract-lora")(extract_lora)
