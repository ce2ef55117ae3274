"""Built-in studies, one folder per paper; importing this registers them."""
from theorylab.studies import icl  # noqa: F401
from theorylab.studies import task_vectors  # noqa: F401
from theorylab.studies import colored_digits  # noqa: F401
from theorylab.studies import activation_prompt  # noqa: F401
from theorylab.studies import dqn  # noqa: F401
from theorylab.studies import retrieval  # noqa: F401
from theorylab.studies import diffusion  # noqa: F401
from theorylab.studies import group_imbalance  # noqa: F401
from theorylab.studies import cot  # noqa: F401
from theorylab.studies import vit  # noqa: F401
from theorylab.studies import mamba  # noqa: F401
from theorylab.studies import graph  # noqa: F401
from theorylab.studies import icl_gpt2  # noqa: F401
from theorylab.studies import lowrank  # noqa: F401
