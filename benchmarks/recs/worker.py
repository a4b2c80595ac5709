"""One measurement in a fresh process: ``python worker.py '<json spec>'`` prints one JSON line.

Cases (the ``case`` field of the spec):

``fit``
    ml-latest-small: load and split (untimed), fit one model (timed), then
    evaluate it on every test user (timed). ``side`` is ``matinee`` (a matinee
    model, scored with :func:`matinee.apps.recs.evaluate`) or ``reference``
    (plain numpy EASE or ``implicit`` called directly, scored by recommending
    the top 20 for every test user and applying matinee's metric functions).
``scale``
    the simulator's ``large`` preset, generated once by ``generate`` into an
    ``.npz``: build the interactions, split, fit and evaluate one matinee model,
    each phase timed. ``expect_error`` reports the error a fit raises instead
    of failing (EASE above ``max_items``).
``generate``
    write the simulator's play log to the ``.npz`` the ``scale`` case reads.

Libraries a fit needs (``implicit``, ``threadpoolctl``) are imported before
the timed region on both sides, so neither fit pays an import. Memory figures
are in bytes: ``peak_*`` the process's peak resident set so far (``VmHWM``
in ``/proc/self/status``), ``rss_*`` its current resident set (``VmRSS``).
"""

import gc
import json
import sys
import time
import traceback

import numpy as np
import protocol as pr


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss():
    """This process's peak resident set so far (``VmHWM``).

    Not ``ru_maxrss``: Linux carries a process's ``ru_maxrss`` over from the
    parent that forked it (its resident set at the fork is kept across
    ``execve``), so a small worker started by a large parent would report the
    parent's size. ``VmHWM`` belongs to the address space ``execve`` created.
    """
    return _status("VmHWM")


def current_rss():
    return _status("VmRSS")


class Clock:
    """Wall (perf_counter) and CPU (process_time: every thread of this process) of a block."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def preload(model):
    if model in ("ALS", "BPR"):
        import implicit.als  # noqa: F401
        import implicit.bpr  # noqa: F401
        import implicit.cpu.als  # noqa: F401
        import implicit.cpu.bpr  # noqa: F401
        import threadpoolctl  # noqa: F401


def fit_case(spec):
    from matinee.apps.recs import evaluate, load_movielens, user_temporal_split

    preload(spec["model"])
    data = load_movielens(spec["data"], min_rating=pr.MIN_RATING)
    split = user_temporal_split(data, test_fraction=pr.TEST_FRACTION, min_interactions=pr.MIN_POSITIVES)
    matrix = split.train.matrix  # built before the clock on both sides
    users = pr.test_users(split)
    relevant = pr.relevant_matrix(split)[users]
    gc.collect()
    out = {"rss_before_fit": current_rss(), "peak_before_fit": peak_rss()}
    if spec["side"] == "matinee":
        model = pr.make_matinee(spec["model"], spec["params"])
        with Clock() as fit:
            model.fit(split.train)
        out["peak_after_fit"] = peak_rss()
        with Clock() as ev:
            table = evaluate(model, split, k=(10, 20), log_prefix=None)
        values = table.set_index(["metric", "k"])["value"]
        out["ndcg@10"] = float(values["ndcg", 10])
        out["eval_users"] = int(table["users"].iloc[0])
    else:
        model = pr.make_reference(spec["model"], spec["params"])
        with Clock() as fit:
            model.fit(matrix)
        out["peak_after_fit"] = peak_rss()
        with Clock() as ev:
            scores = pr.matinee_scores(model.recommend(users), relevant)
        out["ndcg@10"] = float(scores["ndcg@10"].mean())
        out["eval_users"] = len(users)
    out.update(fit_wall=fit.wall, fit_cpu=fit.cpu, eval_wall=ev.wall, eval_cpu=ev.cpu)
    return out


def generate_case(spec):
    from matinee.apps.sim import StreamingService

    with Clock() as gen:
        service = StreamingService(spec["preset"], seed=spec.get("seed", 0))
        plays = service.interactions()
    np.savez(spec["npz"], **{c: plays[c].to_numpy() for c in ("user_id", "item_id", "timestamp")})
    return {"wall": gen.wall, "cpu": gen.cpu, "plays": len(plays), "members": service.n_members,
            "titles": service.n_titles, "members_with_plays": int(plays["user_id"].nunique()),
            "titles_with_plays": int(plays["item_id"].nunique())}


def scale_case(spec):
    import pandas as pd

    from matinee.apps.recs import Interactions, evaluate, user_temporal_split
    from matinee.errors import MatineeError

    preload(spec["model"])
    out = {}
    with Clock() as load:
        with np.load(spec["npz"]) as arrays:
            frame = pd.DataFrame({name: arrays[name] for name in arrays.files})
        data = Interactions.from_frame(frame)  # every play a positive of weight 1, as matinee demo does
        del frame
    with Clock() as cut:
        split = user_temporal_split(data, test_fraction=pr.TEST_FRACTION, min_interactions=pr.MIN_POSITIVES)
        _ = split.train.matrix  # the CSR is built once, here
    del data
    gc.collect()
    active = int(np.count_nonzero(np.diff(split.train.matrix.tocsc().indptr)))
    users = pr.test_users(split)
    out.update(load_wall=load.wall, load_cpu=load.cpu, split_wall=cut.wall, split_cpu=cut.cpu,
               users=split.train.n_users, items=split.train.n_items, active_items=active,
               train_plays=len(split.train), test_plays=len(split.test), test_users=len(users),
               rss_before_fit=current_rss(), peak_before_fit=peak_rss())
    model = pr.make_matinee(spec["model"], spec["params"])
    if spec.get("expect_error"):
        limit = getattr(model, "max_items", None)
        out["max_items"] = limit
        if spec.get("skip_if_allowed") and limit is not None and active <= limit:
            out.update(error=None, skipped=f"{active:,} items with training interactions <= max_items={limit:,}: "
                       "the fit would go ahead, so it was not run here")
            return out
        try:
            with Clock() as fit:
                model.fit(split.train)
        except MatineeError as exc:
            out.update(error_type=type(exc).__name__, error=str(exc), fit_wall=fit.wall)
            return out
        out["error"] = None
        out["fit_wall"] = fit.wall
        return out
    with Clock() as fit:
        model.fit(split.train)
    out.update(fit_wall=fit.wall, fit_cpu=fit.cpu, peak_after_fit=peak_rss())
    sample = None
    if spec.get("sample_users"):
        rng = np.random.default_rng(spec.get("seed", 0))
        chosen = np.sort(rng.choice(users, size=min(spec["sample_users"], len(users)), replace=False))
        sample = split.train.user_ids[chosen]
    with Clock() as ev:
        table = evaluate(model, split, k=(10, 20), users=sample, log_prefix=None)
    values = table.set_index(["metric", "k"])["value"]
    out.update(eval_wall=ev.wall, eval_cpu=ev.cpu, eval_users=int(table["users"].iloc[0]),
               metrics={"ndcg@10": float(values["ndcg", 10]), "recall@20": float(values["recall", 20]),
                        "map@10": float(values["map", 10]), "coverage@10": float(values["coverage", 10])})
    return out


CASES = {"fit": fit_case, "scale": scale_case, "generate": generate_case}


def main():
    spec = json.loads(sys.argv[1])
    try:
        result = CASES[spec["case"]](spec)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    result["peak_end"] = peak_rss()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
