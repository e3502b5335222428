"""How stages report progress. The library stays UI-free; the CLI plugs in a rich progress display."""

from __future__ import annotations


class Reporter:
    """No-op reporter; subclass to show progress."""

    def start(self, stage: str, total: int | None = None, unit: str = "items") -> None:
        pass

    def advance(self, stage: str, n: int = 1, total: int | None = None) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class RichReporter(Reporter):
    """One progress bar per stage, with counts and rates."""

    def __init__(self, console=None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start(self, stage, total=None, unit="items"):
        self.tasks[stage] = self.progress.add_task(stage, total=total, unit=unit, rate="")

    def advance(self, stage, n=1, total=None):
        task_id = self.tasks[stage]
        if total is not None:
            self.progress.update(task_id, total=total)
        self.progress.advance(task_id, n)
        task = self.progress.tasks[task_id]
        if task.speed:
            self.progress.update(task_id, rate=f"{task.speed:,.0f}/s")

    def finish(self, stage):
        task_id = self.tasks[stage]
        task = self.progress.tasks[task_id]
        self.progress.update(task_id, total=task.completed)

    def log(self, message):
        self.progress.console.print(message)
