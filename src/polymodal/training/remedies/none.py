"""`none`: plain joint training (the diagnostics still run)."""

from __future__ import annotations

from polymodal.tasks import Task
from polymodal.training.remedies.base import REMEDIES, Remedy


@REMEDIES.register("none")
class NoRemedy(Remedy):
    """Every hook of the contract left as it is: the task loss plus the other losses, gradients untouched."""


    @classmethod
    def check_task(cls, task: Task, method: str) -> None:
        """Any task trains without a remedy."""
