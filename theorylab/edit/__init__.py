"""Model editing on plain state dicts: task vectors, one general merge with named presets (mergekit's
task-vector family: linear, task arithmetic, TIES, DARE, breadcrumbs, DELLA, SCE, Model Stock; and
magnitude pruning), low-rank and row-sparse task vectors, LwPTV layer masks,
and theory-guided coefficients. Every per-tensor statistic accepts ``model_axis`` for ensembles."""
from .lowrank import kept_rank, low_rank, low_rank_state
from .lwptv import (SCORES, LayerMasks, apply_layer_masks, cross_task, layer_groups, lwptv_masks, masks_from_scores,
                    relative_update, salient_mass)
from .merge import MERGE_METHODS, MERGEKIT_ONLY_METHODS, MergeKnobs, MergeMethod, TensorMerge, get_merge_method, merge, merge_tensor, register_merge_method
from .params import resolve
from .prune import prune_rows, prune_rows_count, prune_rows_state, row_keep_mask
from .relate import (LambdaSearch, Recommendation, output_similarity, recommend, search_lambda, search_lambda_for_pair,
                     task_vector_cosines)
from .sparsify import (dare, della_keep_probability, magnitude_mask, magnitude_rule, mergekit_count, random_mask, sparsify,
                       topk_mask)
from .state import DEFAULT_LAYER_PATTERN, StateDict, layer_index
from .task_vector import TaskVector

__all__ = [n for n in dir() if not n.startswith("_")]
