"""Online learning in the serving process: feedback becomes policy updates and registry snapshots.

When a deployment sets ``learn = true``, the server remembers, for each artwork
decision it makes, what the policy saw (the member's context, the title's
variant features and which variants were candidates), what it chose and with
what propensity. Feedback for such a decision turns it into a round; every
``learn_batch`` rounds an arm's policy learns from them with
``policy.learn(context, action, reward, propensity, action_features, candidates)``.

Every ``snapshot_interval`` seconds, and once more at shutdown, an arm whose
policy learned since its last snapshot is registered as a new version of the
model (tagged ``online-snapshot``) and its alias is moved to it -- but only if
the alias still points at the version this server built on, so a promotion made
meanwhile wins. A restarted server loads the snapshot and keeps learning.

Learning happens on the event loop between requests, so a request never sees a
policy half-updated. Decisions without feedback teach nothing: a client reports
"shown but not played" as feedback with reward 0.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from matinee.errors import ConflictError, MatineeError

if TYPE_CHECKING:
    from matinee.core.serving.slots import Slot

__all__ = ["OnlineLearner", "Round"]

log = logging.getLogger(__name__)

#: Decisions remembered for learning; older ones are forgotten (their feedback is still logged).
MAX_ROUNDS = 100_000


@dataclass(frozen=True)
class Round:
    """What the policy saw and did in one decision, waiting for its feedback."""

    slot: Slot
    model: Any
    context: np.ndarray  # (d,)
    features: np.ndarray | None  # (width, k) or None
    mask: np.ndarray  # (width,) bool
    action: int
    propensity: float


class OnlineLearner:
    """Buffers rounds per served alias and lets each alias's policy learn from them.

    Parameters
    ----------
    batch
        Rounds per update.
    on_learn
        Called with ``(slot, n_rounds)`` after each update (metrics).
    """

    def __init__(self, batch: int, on_learn: Any = None) -> None:
        self.batch = batch
        self.on_learn = on_learn
        self._waiting: OrderedDict[str, Round] = OrderedDict()
        self._buffers: dict[Slot, list[tuple[Round, float]]] = {}
        self.learned: dict[Slot, int] = {}  # rounds learned by the model now loaded in each slot
        self.unsnapshotted: dict[Slot, int] = {}

    def reset(self, slot: Slot) -> None:
        """Forget the slot's buffered rounds and counts: its alias now serves another model."""
        self._buffers.pop(slot, None)
        self.learned.pop(slot, None)
        self.unsnapshotted.pop(slot, None)

    def remember(self, decision_id: str, round_: Round) -> None:
        """Keep a decision until its feedback arrives."""
        self._waiting[decision_id] = round_
        while len(self._waiting) > MAX_ROUNDS:
            self._waiting.popitem(last=False)

    def feedback(self, decision_id: str, reward: float) -> bool:
        """Turn the first feedback on a remembered decision into a round; returns whether it was one."""
        round_ = self._waiting.pop(decision_id, None)
        if round_ is None:
            return False
        current = round_.slot.current
        if current is None or current.model is not round_.model:
            return False  # the alias moved to another model since: this round is not its to learn
        buffer = self._buffers.setdefault(round_.slot, [])
        buffer.append((round_, reward))
        if len(buffer) >= self.batch:
            self._buffers[round_.slot] = []
            self._learn(round_.slot, round_.model, buffer)
        return True

    def _learn(self, slot: Slot, model: Any, rounds: list[tuple[Round, float]]) -> None:
        width = max(len(r.mask) for r, _ in rounds)
        n = len(rounds)
        mask = np.zeros((n, width), dtype=bool)
        features = None
        first = rounds[0][0].features
        if first is not None:
            features = np.zeros((n, width, first.shape[-1]))
        for i, (r, _) in enumerate(rounds):
            mask[i, : len(r.mask)] = r.mask
            if features is not None and r.features is not None:
                features[i, : len(r.mask)] = r.features
        context = np.stack([r.context for r, _ in rounds])
        action = np.array([r.action for r, _ in rounds])
        reward = np.array([w for _, w in rounds], dtype=np.float64)
        propensity = np.array([r.propensity for r, _ in rounds], dtype=np.float64)
        try:
            model.learn(context, action, reward, propensity, action_features=features, candidates=mask)
        except MatineeError as exc:
            log.warning("online update of %s@%s failed, %d rounds dropped: %s", slot.name, slot.alias, n,
                        exc.message)
            return
        self.learned[slot] = self.learned.get(slot, 0) + n
        self.unsnapshotted[slot] = self.unsnapshotted.get(slot, 0) + n
        if self.on_learn is not None:
            self.on_learn(slot, n)

    async def snapshot(self, slot: Slot) -> int | None:
        """Register the slot's policy as a new version and move the alias to it; returns the version.

        Nothing happens when the policy learned nothing since the last snapshot.
        When the alias moved meanwhile, the version is registered but the alias
        is left where it is (and ``None`` returned).
        """
        loaded = slot.current
        if loaded is None or not self.unsnapshotted.get(slot):
            return None
        frozen = copy.deepcopy(loaded.model)  # on the loop: no update can run while it is copied
        rounds, total = self.unsnapshotted[slot], self.learned.get(slot, 0)
        self.unsnapshotted[slot] = 0
        try:
            return await asyncio.to_thread(self._publish, slot, loaded, frozen, rounds, total)
        except MatineeError as exc:
            self.unsnapshotted[slot] = self.unsnapshotted.get(slot, 0) + rounds
            log.warning("cannot snapshot %s@%s: %s", slot.name, slot.alias, exc.message)
            return None

    @staticmethod
    def _publish(slot: Slot, loaded: Any, frozen: Any, rounds: int, total: int) -> int | None:
        from matinee.core.registry import advance_alias, register_model

        entry = register_model(
            slot.name, frozen, tags=["online-snapshot"], metrics={"online_rounds": float(total)},
            description=f"{slot.name}@{slot.alias} (version {loaded.version}) after {rounds} more online rounds",
        )
        try:
            slot.advance(loaded, entry.version, lambda: advance_alias(
                slot.name, slot.alias, entry.version, expected=loaded.version))
        except ConflictError as exc:
            log.info("snapshot %s version %d registered; alias left alone: %s", slot.name, entry.version,
                     exc.message)
            return None
        log.info("snapshot %s@%s is version %d", slot.name, slot.alias, entry.version)
        return entry.version
