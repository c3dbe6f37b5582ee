"""The common base of sgnb's widgets: an anywidget whose output also carries static HTML and a rich view.

With a widget frontend (JupyterLab, Notebook 7, VS Code) the live view renders; elsewhere (nbconvert without
widget state, GitHub, a terminal) the same facts show as ``text/html`` or through ``__rich__``. When the
widget is displayed (``display(widget)`` or as a cell's value), the output gets a display id, and
``refresh_static()`` rewrites its static part (the live part is unaffected) so a saved notebook holds the final
picture. That also happens after every cell (IPython's ``post_run_cell``) when the data changed, on the
kernel's main thread, so it never races the cell's own output.
"""

from __future__ import annotations

import pathlib
import uuid
from typing import Any

import anywidget

STATIC = pathlib.Path(__file__).parent / "static"


class StaticFallbackWidget(anywidget.AnyWidget):
    """Subclasses implement ``static_html()`` and ``__rich__()`` from their current (synced) data."""

    _css = STATIC / "widgets.css"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._display_id: str | None = None
        self._published_version: Any = None
        self._shell: Any = None

    def static_version(self) -> Any:
        """Changes whenever the static HTML would change (subclasses: their update counter)."""
        return None

    def static_html(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any):
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["text/html"] = self.static_html()
        return data, metadata

    def _repr_html_(self) -> str:
        return self.static_html()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        data, metadata = self._repr_mimebundle_()
        if self._display_id is None:
            self._display_id = uuid.uuid4().hex
            self._published_version = self.static_version()
            display(data, raw=True, metadata=metadata, display_id=self._display_id)
            self._watch_cells()
        else:  # displayed again: a second output showing the same model
            display(data, raw=True, metadata=metadata)

    def refresh_static(self) -> None:
        """Rewrite the static HTML of the output made by ``display(self)`` (no-op if never displayed so)."""
        if self._display_id is None:
            return
        from IPython.display import update_display

        self._published_version = self.static_version()
        data, metadata = self._repr_mimebundle_()
        update_display(data, raw=True, metadata=metadata, display_id=self._display_id)

    def close(self) -> None:
        shell = getattr(self, "_shell", None)  # absent when a subclass refused its arguments before __init__
        if shell is not None:
            try:
                shell.events.unregister("post_run_cell", self._after_cell)
            except ValueError:
                pass
        self._shell = None
        super().close()

    def _watch_cells(self) -> None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and self._shell is None:
            shell.events.register("post_run_cell", self._after_cell)
            self._shell = shell

    def _after_cell(self, result: Any = None) -> None:
        if self.static_version() != self._published_version:
            self.refresh_static()
