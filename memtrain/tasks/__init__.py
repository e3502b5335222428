"""Tasks: what the memory agent is trained and evaluated on.

- :mod:`memtrain.tasks.base`: the task interface (:class:`~memtrain.tasks.base.Task`: where the episodes come
  from, the problem and gold answers of a row, the answer metric, whether the recall probe applies, the
  rollout) and the registry ``TASKS = {"masked-entity": ..., "hotpotqa": ...}`` that rollout, training and
  evaluation look tasks up in.
- :mod:`memtrain.tasks.hotpotqa`: long-document HotpotQA (RULER-HotpotQA as MemAgent builds it): loaders for
  the original HotpotQA files, the Hub dataset and MemAgent's released ``eval_{N}.json`` files; the seeded
  document-pool builder; instance sets written as versioned corpus folders.

``memtrain.tasks.base`` is light (it imports the instance builder and the agent only when they are used);
``memtrain.tasks.hotpotqa`` is imported on demand (``from memtrain.tasks import hotpotqa``).
"""

from .base import TASKS, Task, get_task, task_of_corpus

__all__ = ["TASKS", "Task", "get_task", "task_of_corpus"]
