"""theorylab: runnable theory of efficient learning in shallow Transformers."""
__version__ = "0.1.0"

from theorylab.api import check, config, get_study, results, study_names, train  # noqa: E402,F401
import theorylab.studies  # noqa: E402,F401  (registers the built-in studies; core itself imports no study)
