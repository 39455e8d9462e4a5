"""Render outputs whose costly visualisations are computed only when a tool asks for them."""

from __future__ import annotations

from typing import Callable, Dict, Iterator

from torch import Tensor


class LazyOutputs(dict):
    """A dict of rendered outputs in which some entries are produced on first access.

    ns-render, ns-eval and the viewer read outputs by name (``outputs[name]``, ``name in outputs``, ``keys()``):
    pending entries are listed like computed ones, and computed (then kept) when read. A render timed for FPS
    therefore excludes, e.g., skeleton drawing unless the skeleton is shown.
    """

    def __init__(self, computed: Dict[str, Tensor], pending: Dict[str, Callable[[], Tensor]]) -> None:
        super().__init__(computed)
        self._pending = {k: v for k, v in pending.items() if k not in computed}

    def __missing__(self, key: str) -> Tensor:
        if key not in self._pending:
            raise KeyError(key)
        value = self._pending.pop(key)()
        super().__setitem__(key, value)
        return value

    @property
    def pending(self) -> tuple:
        """Names not computed yet."""
        return tuple(self._pending)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or key in self._pending

    def __iter__(self) -> Iterator[str]:
        yield from list(super().keys()) + list(self._pending)

    def __len__(self) -> int:
        return super().__len__() + len(self._pending)

    def keys(self):  # type: ignore[override]
        return list(iter(self))

    def get(self, key, default=None):  # type: ignore[override]
        return self[key] if key in self else default

    def items(self):  # type: ignore[override]
        return [(key, self[key]) for key in list(iter(self))]

    def values(self):  # type: ignore[override]
        return [self[key] for key in list(iter(self))]
