"""`none`: plain joint training (the diagnostics still run)."""

from __future__ import annotations

from polymodal.tasks import Task
from polymodal.training.remedies.base import REMEDIES, Remedy


@REMEDIES.register("none")
class NoRemedy(Remedy):
    """Every hook of the contract left as it is: the task loss plus the other losses, gradients untouched."""

    name = "none"

    @classmethod
    def check_task(cls, task: Task) -> None:
        """Any task trains without a remedy."""
