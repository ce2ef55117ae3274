"""Built-in studies, one folder per paper; importing this registers them."""
from theorylab.studies import icl  # noqa: F401
