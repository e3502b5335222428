"""Downstream tasks: where their questions and documents come from and how instances are built.

- :mod:`memtrain.tasks.hotpotqa`: long-document HotpotQA (RULER-HotpotQA as MemAgent builds it): loaders for
  the original HotpotQA files, the Hub dataset and MemAgent's released ``eval_{N}.json`` files; the seeded
  document-pool builder; instance sets written as versioned corpus folders.

Submodules are imported on demand (``from memtrain.tasks import hotpotqa``), so importing this package costs
nothing.
"""
