"""Built-in studies, one folder per paper; importing this registers them."""
from theorylab.studies import icl  # noqa: F401
from theorylab.studies import task_vectors  # noqa: F401
from theorylab.studies import colored_digits  # noqa: F401
from theorylab.studies import lowrank  # noqa: F401
