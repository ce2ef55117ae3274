"""Activation-prompt study config ("Visual Prompting Reimagined: The Power of Activation Prompts", AISTATS 2026).
Spec: ../shared/papers/taskvec_lwptv_ap_diffusion.md section 3. Every [D] choice of the spec is a field; the
paper's ImageNet backbones and 29 data sets stand in as a small CNN / ViT pre-trained on scikit-learn's digits
and adapted to a transformed copy of them (no downloads). The tb_* fields are the theory testbed's (part=testbed,
spec 3.4, testbed.py); the testbed is the same at every size."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig


class APConfig(StudyConfig):
    study: ClassVar[str] = "activation_prompt"
    # the testbed's sample-complexity claims sweep tb_n: the cells of one seed share patterns, head start and the
    # nested training sets (the first n samples of one stream)
    swept_fields: ClassVar[frozenset[str]] = frozenset({"tb_n"})

    part: Literal["digits", "testbed"] = Field(
        "digits", description="what a cell trains: the digit benchmark (CNN/ViT on 8x8 digits) or the theory "
                              "testbed (spec 3.4: local vs global backbone on the token data model, testbed.py)")

    seed: int = Field(0, ge=0, description="seed; init, batches and the target subset derive from the config hash")
    arch: Literal["cnn", "vit"] = Field("cnn", description="backbone: a residual CNN with BatchNorm or a pre-LN ViT [D]")
    depth: int = Field(4, ge=1, le=12, description="residual blocks (CNN) or transformer blocks (ViT) [D]")
    channels: int = Field(16, ge=2, le=256, description="CNN channels (3x3 convolutions, stride 1, 8x8 maps) [D]")
    width: int = Field(32, ge=4, le=512, description="ViT width D [D]")
    heads: int = Field(2, ge=1, le=16, description="ViT attention heads [D]")
    patch: Literal[1, 2, 4] = Field(2, description="ViT patch size on the 8x8 digits [D]")
    # pre-training on the source task: digit identity on the original images
    pretrain_steps: int = Field(400, ge=1, le=100_000, description="AdamW steps of pre-training [D]")
    pretrain_lr: float = Field(3e-3, gt=0, le=1, description="pre-training learning rate [D]")
    # the downstream task: the same digits transformed, a new 10-way head
    transform: Literal["rot90_invert", "rot90", "invert", "flip"] = Field(
        "rot90_invert", description="target domain: the training/test digits rotated by 90 degrees and/or inverted [D]")
    n_target: int = Field(400, ge=20, le=1000, description="labelled target training images (a seed's own subset) [D]")
    n_val: int = Field(200, ge=10, le=400, description="target images held out of training to choose the AP layer [D]")
    lr: float = Field(1e-2, gt=0, le=10, description="Adam learning rate of every adaptation (spec: 1e-2 for delta) [D]")
    steps: int = Field(300, ge=1, le=100_000, description="Adam steps of every adaptation method [D]")
    B: int = Field(64, ge=1, le=4096, description="batch size [D]")
    test_every: int = Field(4, ge=2, le=20, description="image i of load_digits() is a test image iff i % test_every == 0")
    curve_points: int = Field(10, ge=2, le=10_000, description="checkpoints recorded along training")

    # the theory testbed (part = testbed; spec 3.4): its own data model, frozen backbones and prompts
    tb_tokens: int = Field(8, ge=2, le=64, description="testbed: tokens P per sample [D]")
    tb_dim: int = Field(8, ge=2, le=64, description="testbed: token dimension d (1 label pattern, d-1 irrelevant) [D]")
    tb_alpha: float = Field(0.25, gt=0, le=1, description="testbed: share of tokens carrying the label pattern [D]")
    tb_signal: float = Field(1.0, gt=0, le=100, description="testbed: amplitude a of every pattern [D]")
    tb_noise: float = Field(0.3, ge=0, le=100, description="testbed: Gaussian noise per token coordinate [D]")
    tb_tau: float = Field(0.5, ge=0, le=100, description="testbed: threshold of the layer-1 pattern detectors [D]")
    tb_sharp: float = Field(4.0, gt=0, le=100, description="testbed: beta of the smooth ReLU softplus(beta t)/beta [D]")
    tb_n: int = Field(32, ge=1, le=65_536, description="testbed: labelled training samples (swept by the claims)")
    tb_n_min: int = Field(4, ge=1, le=65_536, description="testbed: smallest n of the claims' sample-size grid")
    tb_n_max: int = Field(256, ge=1, le=65_536, description="testbed: largest n of the grid (doubling from tb_n_min)")
    tb_test: int = Field(2000, ge=10, le=100_000, description="testbed: fresh test samples")
    tb_steps: int = Field(300, ge=1, le=100_000, description="testbed: full-batch Adam steps of every arm [D]")
    tb_lr: float = Field(0.05, gt=0, le=10, description="testbed: Adam learning rate of every arm [D]")

    @model_validator(mode="after")
    def _testbed_grid(self) -> "APConfig":
        if self.tb_n_min > self.tb_n_max:
            raise ValueError(f"field 'tb_n_min' must be <= tb_n_max = {self.tb_n_max} (got {self.tb_n_min})")
        return self

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "APConfig":
        # checked whatever arch is: the claims train both backbones
        if self.width % self.heads:
            raise ValueError(f"field 'width' must be a multiple of heads = {self.heads} (got {self.width})")
        return self


QUICK: dict = {}
FULL = {"pretrain_steps": 2000, "steps": 1500, "depth": 6, "n_target": 800}
TINY = {"pretrain_steps": 10, "steps": 5, "depth": 1, "channels": 4, "width": 8, "n_target": 40, "n_val": 20, "B": 16,
        "curve_points": 2, "tb_tokens": 4, "tb_dim": 3, "tb_n_min": 4, "tb_n_max": 16, "tb_test": 200, "tb_steps": 40}
