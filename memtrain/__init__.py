"""memtrain: self-supervised context-memory training (MemTrain, arXiv 2606.03197)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memtrain")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
