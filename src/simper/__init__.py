"""simper: preference alignment of causal language models with SimPER."""

__version__ = "0.1.0"
