"""Coefficient grids for task arithmetic and region (8) of Thm 6 (Li et al., ICLR 2025): written once in
theorylab.core.experiment, re-exported here for the editing API."""
from theorylab.core.experiment import in_region8, lam_grid, pair_lambdas, plane_lambdas, region8

__all__ = ["in_region8", "lam_grid", "pair_lambdas", "plane_lambdas", "region8"]
