"""Hugging Face / safetensors checkpoints: streaming reads, atomic sharded writes, mergekit-style merges
and ``relate``. transformers is needed only for probe inputs in relate."""
from .checkpoint import CheckpointReader, ShardedWriter, atomic_output_dir, copy_support_files, load_state_dict, save_state_dict
from .config import ConfigError, MergeConfig, load_config, parse_config
from .merge import MergeReport, merge_checkpoints
from .relate import RelateReport, relate_checkpoints, task_vector_cosines_streaming
from .safetensors_io import SafetensorsFile, SafetensorsWriter, TensorInfo

__all__ = [n for n in dir() if not n.startswith("_")]
