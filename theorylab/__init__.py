"""theorylab: runnable theory of efficient learning in shallow Transformers."""
__version__ = "0.1.0"
