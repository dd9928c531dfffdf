"""The package version, where every layer may read it (``autoseg.__version__`` re-exports it)."""
__version__ = "0.1.0"
