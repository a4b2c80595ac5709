"""Simulated members' traffic against a running matinee server, the simulator deciding what gets played.

:func:`drive` plays members of an :class:`~matinee.apps.sim.ArtworkEnvironment`
against a server over real HTTP, in visits: a member (drawn in proportion to
their activity) asks ``/recommendations`` for a row of titles, then
``/artwork`` for the variant to show for each title; the environment's ground
truth decides which impressions are played, and every artwork decision gets
its ``/feedback`` (reward 1 for a play, 0 otherwise), so a server that learns
online learns from it. Batch endpoints (``/recommendations/batch``,
``/artwork/batch``) are used when the server has them, single requests
otherwise.

Next to each observed outcome the result keeps the truth of the impression:
the play probability of the variant shown, its average over the variants (a
uniformly random choice) and its maximum (the oracle), so a take rate can be
read against what was possible on the same traffic.

Examples
--------
>>> from matinee.apps.sim.traffic import drive       # doctest: +SKIP
>>> from matinee.apps.sim import ArtworkEnvironment  # doctest: +SKIP
>>> result = drive("http://127.0.0.1:8000", ArtworkEnvironment(seed=7), visits=500)  # doctest: +SKIP
>>> result.by_arm()[["arm", "decisions", "take_rate"]]  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from matinee.errors import MatineeError, ParameterError

__all__ = ["ROUND_COLUMNS", "TrafficResult", "drive", "take_rate_interval"]

#: Columns of :attr:`TrafficResult.rounds`, one row per artwork decision.
ROUND_COLUMNS = ("step", "elapsed", "member_id", "title_id", "arm", "model_version", "decision_id", "action",
                 "propensity", "reward", "expected", "uniform", "oracle")

_RETRIES = 20  # attempts at a request the server refuses as overloaded (503/429)


@dataclass(frozen=True)
class TrafficResult:
    """What :func:`drive` sent and what the members did.

    Attributes
    ----------
    rounds
        One row per artwork decision (see :data:`ROUND_COLUMNS`): the visit's
        step, seconds since the start, member, title, the arm and model version
        that answered, the decision id, the variant shown and its propensity,
        the observed reward, and the truth of the impression: ``expected`` (play
        probability of the variant shown), ``uniform`` (mean over the
        variants) and ``oracle`` (the best variant's).
    requests
        HTTP requests sent, by endpoint path.
    seconds
        Wall time of the whole drive.
    batch
        Whether the batch endpoints answered (else single requests were sent).
    """

    rounds: pd.DataFrame
    requests: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    batch: bool = True

    @property
    def decisions(self) -> int:
        """Artwork decisions made (each got its feedback)."""
        return len(self.rounds)

    def by_arm(self, level: float = 0.95) -> pd.DataFrame:
        """Take rate per arm with a Wilson interval, next to the truth of the same impressions.

        Parameters
        ----------
        level
            Coverage of the interval.

        Returns
        -------
        pandas.DataFrame
            One row per arm: ``arm``, ``decisions``, ``plays``, ``take_rate``,
            ``low``, ``high``, ``expected``, ``uniform``, ``oracle``,
            ``share_of_oracle`` and ``versions`` (model versions that answered).
        """
        rows = []
        for arm, part in self.rounds.groupby("arm", sort=True):
            plays = float(part["reward"].sum())
            low, high = take_rate_interval(plays, len(part), level)
            expected, oracle = float(part["expected"].mean()), float(part["oracle"].mean())
            rows.append({"arm": str(arm), "decisions": len(part), "plays": int(plays),
                         "take_rate": plays / len(part), "low": low, "high": high, "expected": expected,
                         "uniform": float(part["uniform"].mean()), "oracle": oracle,
                         "share_of_oracle": expected / oracle if oracle > 0 else float("nan"),
                         "versions": sorted({int(v) for v in part["model_version"]})})
        return pd.DataFrame(rows)


def take_rate_interval(plays: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a take rate of ``plays`` out of ``n``.

    Examples
    --------
    >>> low, high = take_rate_interval(50, 100)
    >>> round(low, 3), round(high, 3)
    (0.404, 0.596)
    >>> take_rate_interval(0, 0)
    (nan, nan)
    """
    if n <= 0:
        return float("nan"), float("nan")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = plays / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def drive(
    url: str,
    environment: Any,
    *,
    visits: int,
    page_size: int = 8,
    visits_per_step: int = 25,
    concurrency: int = 8,
    timeout: float = 30.0,
    on_step: Callable[[int, int], None] | None = None,
) -> TrafficResult:
    """Send ``visits`` simulated member visits to the server at ``url`` and feed back what happened.

    Parameters
    ----------
    url
        The server's base URL, e.g. ``http://127.0.0.1:8000``; it must serve
        ``/recommendations``, ``/artwork`` and ``/feedback``.
    environment
        The :class:`~matinee.apps.sim.ArtworkEnvironment` whose members visit,
        whose artwork the titles have, and whose ground truth decides plays (its
        seeded stream draws the members and the outcomes). Its member and title
        ids must be the served recommender's.
    visits
        Member visits to simulate; each asks for ``page_size`` titles and makes
        that many artwork decisions.
    page_size
        Titles recommended per visit (``k`` of ``/recommendations``).
    visits_per_step
        Visits sent together (one batch request per endpoint when the server
        has batch endpoints). Feedback of a step is sent before the next step
        starts, so an online learner sees it.
    concurrency
        Requests in flight at once.
    timeout
        Seconds to wait for any one answer.
    on_step
        Called as ``on_step(done, total)`` after each step (a progress bar).

    Returns
    -------
    TrafficResult

    Raises
    ------
    ParameterError
        A non-positive ``visits``, ``page_size``, ``visits_per_step`` or ``concurrency``.
    MatineeError
        The server answered with an error, or could not be reached; the message
        names the endpoint and quotes the server's answer.
    """
    for name, value in (("visits", visits), ("page_size", page_size), ("visits_per_step", visits_per_step),
                        ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name} must be a whole number >= 1, not {value!r}", parameter=name)
    driver = _Driver(url.rstrip("/"), environment, page_size, concurrency, timeout)
    return asyncio.run(driver.run(visits, visits_per_step, on_step))


class _Driver:
    def __init__(self, url: str, environment: Any, page_size: int, concurrency: int, timeout: float) -> None:
        self.url = url
        self.env = environment
        self.page_size = page_size
        self.timeout = timeout
        self.semaphore: asyncio.Semaphore | None = None  # made in the event loop that uses it
        self.concurrency = concurrency
        self.requests: dict[str, int] = {}
        self.batch = {"/recommendations": True, "/artwork": True}

    async def run(self, visits: int, per_step: int, on_step: Callable[[int, int], None] | None) -> TrafficResult:
        import httpx

        self.semaphore = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        frames = []
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout, limits=limits) as client:
            done, step = 0, 0
            while done < visits:
                n = min(per_step, visits - done)
                frames.append(await self._step(client, step, n, started))
                done, step = done + n, step + 1
                if on_step is not None:
                    on_step(done, visits)
        rounds = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(ROUND_COLUMNS))
        return TrafficResult(rounds, dict(self.requests), time.perf_counter() - started,
                             batch=all(self.batch.values()))

    async def _step(self, client: Any, step: int, n: int, started: float) -> pd.DataFrame:
        members = self.env.sample(n).member_ids  # members in proportion to their activity
        pages = await self._calls(client, "/recommendations",
                                  [{"user_id": int(m), "k": self.page_size} for m in members])
        member_rows = np.concatenate([np.full(len(p["items"]), m) for m, p in zip(members, pages, strict=True)])
        title_rows = np.concatenate([np.asarray(p["items"], dtype=np.int64) for p in pages])
        shown = self.env.impressions(member_rows, title_rows)
        bodies, upto = [], 0
        for member, page in zip(members, pages, strict=True):
            k = len(page["items"])
            titles = []
            for row in range(upto, upto + k):
                ok = np.arange(shown.variant_features.shape[1]) if shown.mask is None else np.flatnonzero(shown.mask[row])
                titles.append({"title_id": int(title_rows[row]),
                               "variants": [{"id": int(v), "features": shown.variant_features[row, v].tolist()}
                                            for v in ok]})
            if titles:
                bodies.append({"user_id": int(member), "context": shown.context[upto].tolist(), "titles": titles})
            upto += k
        answers = await self._calls(client, "/artwork", bodies)
        decisions = [(answer, choice) for answer in answers for choice in answer["choices"]]
        actions = np.asarray([int(choice["variant_id"]) for _, choice in decisions], dtype=np.int64)
        if len(actions) != len(shown):
            raise MatineeError(f"/artwork answered {len(actions)} choices for {len(shown)} titles", url=self.url)
        rewards = self.env.reward(shown, actions)
        truth = self.env.play_probability(shown)
        await self._feedback(client, [(choice["decision_id"], reward) for (_, choice), reward
                                      in zip(decisions, rewards.tolist(), strict=True)])
        available = truth > 0 if shown.mask is None else shown.mask
        return pd.DataFrame({
            "step": step,
            "elapsed": time.perf_counter() - started,
            "member_id": member_rows,
            "title_id": title_rows,
            "arm": [answer["arm"] for answer, _ in decisions],
            "model_version": [int(answer["version"]) for answer, _ in decisions],
            "decision_id": [choice["decision_id"] for _, choice in decisions],
            "action": actions,
            "propensity": [float(choice["propensity"]) for _, choice in decisions],
            "reward": rewards,
            "expected": truth[np.arange(len(actions)), actions],
            "uniform": truth.sum(axis=1) / available.sum(axis=1),
            "oracle": truth.max(axis=1),
        })

    async def _calls(self, client: Any, path: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Answers to ``bodies`` at ``path``, in order: one batch request if the server has it, else one each."""
        if not bodies:
            return []
        if self.batch[path]:
            answer = await self._post(client, f"{path}/batch", {"requests": bodies}, missing_ok=True)
            if answer is not None:
                results = answer.get("results")
                if not isinstance(results, list) or len(results) != len(bodies):
                    raise MatineeError(f"{path}/batch answered {answer!r:.200}, not {len(bodies)} results",
                                       url=self.url)
                return results
            self.batch[path] = False
        return list(await asyncio.gather(*(self._post(client, path, body) for body in bodies)))

    async def _feedback(self, client: Any, outcomes: list[tuple[str, float]]) -> None:
        await asyncio.gather(*(self._post(client, "/feedback", {"decision_id": decision, "event":
                                                                "play" if reward else "no_play", "reward": reward})
                               for decision, reward in outcomes))

    async def _post(self, client: Any, path: str, body: dict[str, Any], missing_ok: bool = False) -> Any:
        import httpx

        assert self.semaphore is not None
        for attempt in range(_RETRIES):
            async with self.semaphore:
                self.requests[path] = self.requests.get(path, 0) + 1
                try:
                    response = await client.post(path, json=body)
                except (httpx.ConnectError, httpx.PoolTimeout) as exc:  # not sent: safe to send again
                    if attempt < _RETRIES - 1:
                        await asyncio.sleep(min(1.0, 0.01 * 2 ** attempt))
                        continue
                    raise MatineeError(f"POST {self.url}{path} failed: {type(exc).__name__} {exc}",
                                       url=self.url) from exc
                except httpx.HTTPError as exc:
                    raise MatineeError(f"POST {self.url}{path} failed: {type(exc).__name__} {exc}",
                                       url=self.url) from exc
            if response.status_code == 200:
                return response.json()
            if missing_ok and response.status_code in (404, 405):
                return None  # no batch endpoint (or no model: the single requests will say so)
            if response.status_code in (429, 503) and attempt < _RETRIES - 1:
                await asyncio.sleep(min(1.0, 0.01 * 2 ** attempt))
                continue
            detail = _json(response)
            message = detail.get("detail") or response.text[:300]
            raise MatineeError(f"POST {path} answered {response.status_code}: {message}", url=self.url,
                               status_code=response.status_code)
        raise AssertionError("unreachable")  # pragma: no cover


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
