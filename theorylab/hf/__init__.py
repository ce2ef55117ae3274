"""Hugging Face / safetensors checkpoints: streaming reads, atomic sharded writes, mergekit-style merges,
LoRA adapters as task vectors (extract and read) and ``relate``. transformers is needed only for probe
inputs in relate, for finding module types in extract-lora
and for telling Linear from Conv1D in adapters with fan_in_fan_out."""
from .checkpoint import CheckpointReader, ShardedWriter, atomic_output_dir, copy_support_files, load_state_dict, save_state_dict
from .config import ConfigError, MergeConfig, load_config, parse_config
from .lora import AdaptedReader, LoraAdapter, read_adapter
from .lora_extract import ExtractReport, extract_lora
from .merge import MergeReport, merge_checkpoints, model_card
from .relate import RelateReport, relate_checkpoints, task_vector_cosines_streaming
from .safetensors_io import SafetensorsFile, SafetensorsWriter, TensorInfo

__all__ = [n for n in dir() if not n.startswith("_")]
