"""Graph-transformer study config (Li, Wang, Ma, Liu, Zhang, Chen; ICML 2024). Paper symbols as field names;
every [D]/[M] fact of ../shared/papers/vit_gt_mamba_gmm_dqn_pcas.md section 2 is a field.

Data (section 2.1): a random deg-regular graph on N nodes (or Erdos-Renyi of mean degree deg); each node is
discriminative with probability p_d (pattern mu_+ or mu_-, 1/2 each) or carries one of M class-irrelevant
patterns nu_j; features are pattern + bounded noise tau. y_n = sign(#mu_+ - #mu_-) over the nodes at distance
exactly z_m from n (the core neighbourhood); tied nodes are discarded. n_label labelled nodes are drawn
uniformly from the untied ones (nested across n_label), the other untied nodes are the test set.

Model (section 2.2): node n attends to T^n = itself + up to k sampled nodes at each distance 1..Z (a fixed
sample; hops = z keeps itself + distance z only: PE-based sampling, the seed's Fig. 8), with the trainable
relative PE b_z added to the scores by shortest-path distance; then a two-layer perceptron with a fixed
output layer a = +-1/sqrt(m). variant: gt (attention + PE) | no_pe (b frozen at 0) | gcn (gcn_layers GCN
aggregations instead of attention; 0 means z_m layers).

graph other than regular / er: networkx's bundled graphs (karate, les_miserables, florentine) carry the data
model's planted features and labels on their real topology; digits_knn / cancer_knn are symmetric knn-NN
graphs of scikit-learn's digits / breast-cancer sets with their own features (first d principal components)
and labels (digit >= 5; malignant). Nothing is downloaded.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig

SYNTHETIC = ("regular", "er")
PLANTED = ("karate", "les_miserables", "florentine")  # networkx's bundled graphs + the data model's features
NATIVE = ("digits_knn", "cancer_knn")  # scikit-learn data sets as k-NN graphs, their own features and labels
DATA_FIELDS = ("seed", "graph", "N", "deg", "d", "M", "p_d", "tau", "z_m", "Z", "k", "knn", "label_rule")


class GraphConfig(StudyConfig):
    study: ClassVar[str] = "graph"
    # z_m is not an ensemble scalar: with k = 0 (auto) it sets the token count L, a shape
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset({"seed", "lr", "n_label", "p_d", "tau", "label_rule"})
    # the claims compare these cells of one seed on one graph with one initialisation (common random numbers)
    swept_fields: ClassVar[frozenset[str]] = frozenset({"n_label", "variant", "label_rule", "hops"})

    seed: int = Field(0, ge=0, lt=2**62, description="seed; the graph, features and labelled set derive from "
                      "the data fields' hash, so variants and n_label of one seed share one graph")
    # data model (section 2.1)
    graph: Literal["regular", "er", "karate", "les_miserables", "florentine", "digits_knn", "cancer_knn"] = Field(
        "regular", description="synthetic random graph, a networkx bundled graph (planted features) or a "
        "scikit-learn k-NN graph (native features and labels) [D]")
    N: int = Field(500, ge=8, le=20000, description="nodes of a synthetic graph [D: 2,000]")
    deg: int = Field(4, ge=1, le=64, description="degree of the regular graph / mean degree of Erdos-Renyi [D]")
    d: int = Field(16, ge=3, le=1024, description="feature dimension; patterns are e_0 (mu_+), e_1 (mu_-), "
                   "e_2..e_{M+1} (nu_j) [D: 10-20]")
    M: int = Field(10, ge=1, le=1022, description="class-irrelevant patterns nu_j [D]")
    p_d: float = Field(0.5, gt=0, le=1, description="probability that a node is discriminative [D]")
    tau: float = Field(0.1, ge=0, le=1, description="bounded noise: x = pattern + tau u, u uniform in "
                       "[-1, 1]^d / sqrt(d), so ||noise|| <= tau [D]")
    z_m: int = Field(2, ge=1, le=8, description="core distance: the label is the majority pattern at exactly "
                     "this distance [M/I]")
    label_rule: Literal["core", "tokens", "random"] = Field(
        "core", description="core: the majority rule at distance z_m; tokens: the majority over the whole of T^n "
        "(no core distance: a rule attention without PE represents, the controls' arm); random: labels drawn "
        "independently of the graph")
    knn: int = Field(5, ge=1, le=100, description="neighbours of the k-NN graphs built from scikit-learn sets")
    # model (section 2.2)
    variant: Literal["gt", "no_pe", "gcn"] = Field("gt", description="gt: attention + trainable PE b_z; "
                                                   "no_pe: b frozen at 0; gcn: GCN aggregation, no attention")
    Z: int = Field(3, ge=1, le=8, description="largest distance attended to; b has Z + 1 entries b_0..b_Z [D: 4]")
    k: int = Field(0, ge=0, le=256, description="sampled nodes per distance 1..Z in T^n (fewer where fewer "
                   "exist; a fixed sample) [D: 10]; 0: deg (deg-1)^(z_m-1), the largest distance-z_m shell of a "
                   "deg-regular graph, so T^n holds the whole core neighbourhood at every degree")
    hops: int = Field(-1, ge=-1, le=8, description="-1: T^n covers distances 0..Z; z >= 1: itself and "
                      "distance z only (PE-based sampling, the seed's Fig. 8)")
    gcn_layers: int = Field(0, ge=0, le=8, description="GCN variant: aggregation layers (0: z_m) [D: 1 to z_m]")
    init: Literal["paper", "gaussian"] = Field(
        "paper", description="paper: W_Q = W_K = I + init_error G/sqrt(d), W_V = I + init_error G/sqrt(d) (near "
        "identity, section 1.2 [D]), W_O ~ N(0, 1/d); gaussian: every weight N(0, 1/fan_in)")
    init_error: float = Field(0.1, ge=0, le=10, description="paper init: the relative error sigma = delta of "
                              "W_Q, W_K, W_V around the identity [D: 0.1]")
    biases: bool = Field(False, description="train bias vectors (qkv, output projection, perceptron, GCN layers); "
                         "the paper's model has none")
    m: int = Field(64, ge=2, le=65536, description="hidden width of the perceptron (W_O rows) [D: 200]")
    # training (section 2.3)
    n_label: int = Field(160, ge=2, le=20000, description="|L|, labelled nodes (the sample complexity)")
    lr: float = Field(0.5, gt=0, le=1e4, description="SGD learning rate [D: 0.05]")
    B: int = Field(32, ge=1, le=1 << 16, description="labelled nodes per SGD step (drawn with replacement) [D: 16]")
    steps: int = Field(400, ge=1, le=10_000_000, description="SGD steps [D: 500-2,000]")
    curve_points: int = Field(20, ge=2, le=10_000, description="checkpoints (test error, b_z, attention) along training")

    @model_validator(mode="after")
    def _consistent(self) -> "GraphConfig":
        if self.graph in SYNTHETIC + PLANTED and self.d < self.M + 2:
            raise ValueError(f"field 'd' must be >= M + 2 = {self.M + 2} (mu_+, mu_- and M patterns nu_j are "
                             f"orthonormal) (got {self.d})")
        if self.graph == "regular" and (self.N * self.deg) % 2:
            raise ValueError(f"field 'deg': N x deg must be even for a {self.deg}-regular graph (got N = {self.N})")
        if self.graph == "regular" and self.deg >= self.N:
            raise ValueError(f"field 'deg' must be < N = {self.N} (got {self.deg})")
        if self.z_m > self.Z:
            raise ValueError(f"field 'z_m' must be <= Z = {self.Z}: the core neighbourhood must be attended to "
                             f"(got {self.z_m})")
        if self.hops > self.Z:
            raise ValueError(f"field 'hops' must be <= Z = {self.Z} (got {self.hops})")
        if self.hops == 0:
            raise ValueError("field 'hops' must be -1 (all distances) or a distance z >= 1 (got 0)")
        if self.graph in SYNTHETIC and self.n_label > self.N // 2:
            raise ValueError(f"field 'n_label' must be <= N / 2 = {self.N // 2} so a test set remains "
                             f"(got {self.n_label})")
        return self

    @property
    def layers(self) -> int:
        """GCN aggregation layers."""
        return self.gcn_layers or self.z_m

    @property
    def k_eff(self) -> int:
        """Slots per distance: k, or (k = 0) the largest distance-z_m shell of a deg-regular graph."""
        return tokens_per_distance(self.k, self.deg, self.z_m)

    @property
    def L(self) -> int:
        """Tokens per node: itself, then k_eff slots for each attended distance."""
        return 1 + self.k_eff * (self.Z if self.hops < 0 else 1)


def tokens_per_distance(k: int, deg: int, z_m: int) -> int:
    """k, or for k = 0 the size deg (deg-1)^(z_m-1) of the largest distance-z_m shell a deg-regular graph has
    (Erdos-Renyi and real graphs have hubs above it: the claims report the core coverage they measure)."""
    return k or min(256, deg * max(1, deg - 1) ** (z_m - 1))


TINY = {"N": 60, "n_label": 16, "k": 6, "m": 16, "steps": 20, "B": 8, "curve_points": 4}  # ~1 s
QUICK: dict = {}
FULL = {"N": 2000, "n_label": 640, "m": 200, "steps": 1000, "curve_points": 40}  # spec scale (N 2,000, m 200)
