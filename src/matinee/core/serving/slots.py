"""Served models and their hot swap.

A :class:`Slot` holds the model an alias points at as one immutable
:class:`Loaded` value. A request reads ``slot.current`` once and uses that
object to the end, so replacing the reference (one attribute assignment) is
the whole swap: requests already running finish on the old version, new ones
get the new one, and none sees a half-loaded model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from matinee.core.registry import get_model
from matinee.errors import ConflictError, MatineeError

__all__ = ["Loaded", "Slot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """One loaded model version."""

    name: str
    alias: str
    version: int
    model: Any


class Slot:
    """The model behind ``name@alias``, reloaded when the alias moves.

    Parameters
    ----------
    name, alias
        The registered model and the alias to follow.
    """

    def __init__(self, name: str, alias: str) -> None:
        self.name = name
        self.alias = alias
        self.current: Loaded | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the version the alias points at if it is not the one loaded; returns whether it swapped.

        A registry error (the alias is missing, the store is unreachable) keeps
        the loaded model and is remembered in :attr:`error`.
        """
        with self._lock:
            try:
                entry = get_model(self.name, alias=self.alias)
                current = self.current
                if current is not None and current.version == entry.version:
                    self.error = None
                    return False
                model = entry.load()
            except MatineeError as exc:
                self.error = exc.message
                log.warning("cannot load %s@%s: %s", self.name, self.alias, exc.message)
                return False
            self.current = Loaded(self.name, self.alias, entry.version, model)
            self.error = None
            log.info("serving %s@%s version %d", self.name, self.alias, entry.version)
            return True

    def advance(self, loaded: Loaded, version: int, move: Callable[[], Any]) -> None:
        """Serve ``loaded``'s model object as ``version`` after ``move()`` pointed the alias at it.

        For a version made from the loaded model itself (an online snapshot): the
        object in memory stays, so nothing is reloaded and nothing learned since is
        lost. Raises :class:`ConflictError` if another version was swapped in.
        """
        with self._lock:
            if self.current is not loaded:
                raise ConflictError(f"{self.name}@{self.alias} was swapped meanwhile", model=self.name)
            move()
            self.current = Loaded(self.name, self.alias, version, loaded.model)
