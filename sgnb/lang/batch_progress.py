"""`run_batch(progress_bar=True)`: an ipywidgets bar inside a notebook kernel, a rich bar in a terminal."""

from __future__ import annotations

import sys


class BatchProgress:
    """run_batch progress: an ipywidgets bar inside a notebook kernel, a rich bar in a terminal."""

    def __init__(self, total: int, enabled: bool, name: str) -> None:
        self.kind = None
        if not enabled:
            return
        if in_notebook():
            import ipywidgets
            from IPython.display import display

            self.bar = ipywidgets.IntProgress(min=0, max=total, value=0, description=name[:20])
            self.label = ipywidgets.Label(f"0/{total}")
            self.total = total
            display(ipywidgets.HBox([self.bar, self.label]))
            self.kind = "widget"
        else:
            from rich.progress import Progress

            self.progress = Progress(transient=False)
            self.progress.start()
            self.task = self.progress.add_task(name, total=total)
            self.kind = "rich"

    def advance(self) -> None:
        if self.kind == "widget":
            self.bar.value += 1
            self.label.value = f"{self.bar.value}/{self.total}"
        elif self.kind == "rich":
            self.progress.advance(self.task)

    def close(self) -> None:
        if self.kind == "rich":
            self.progress.stop()
        elif self.kind == "widget":
            self.bar.bar_style = "success" if self.bar.value == self.total else "warning"
        self.kind = None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (never imports IPython itself)."""
    ipython_mod = sys.modules.get("IPython")
    if ipython_mod is None:
        return False
    try:
        shell = ipython_mod.get_ipython()
    except Exception:  # noqa: BLE001
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


__all__ = ["BatchProgress", "in_notebook"]
