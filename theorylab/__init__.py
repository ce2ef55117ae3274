"""theorylab: runnable theory of efficient learning in shallow Transformers."""
__version__ = "0.1.0"

from theorylab.api import check, config, get_study, results, study_names, train  # noqa: E402,F401
