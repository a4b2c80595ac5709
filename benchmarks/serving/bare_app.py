"""The bare ASGI baseline: the same factors and top-10 as matinee, with nothing around them.

``uvicorn --factory bare_app:app`` with ``BENCH_FACTORS`` pointing at the
``factors.npz`` that models.py wrote. ``POST /recommendations`` with
``{"user_id": ..., "k": 10}`` scores ``user_factors[u] @ item_factors.T``, takes
the top k with ``argpartition`` and sorts them, and answers with the item ids
and scores as JSON; ``GET /readyz`` answers 200. No validation, no exclusion of
seen items, no metrics, no logging: the floor for this numpy work on this server.
"""

import json
import os

import numpy as np

_JSON = [(b"content-type", b"application/json")]


def app():
    data = np.load(os.environ["BENCH_FACTORS"])
    user_factors = data["user_factors"]
    item_factors_t = np.ascontiguousarray(data["item_factors"].T)
    user_index = {int(u): i for i, u in enumerate(data["user_ids"].tolist())}
    item_ids = data["item_ids"]

    async def respond(send, status, payload):
        body = json.dumps(payload, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"] != "/recommendations":
            await respond(send, 200, {"ready": True})
            return
        request = json.loads(b"".join(chunks))
        k = int(request.get("k", 10))
        scores = user_factors[user_index[request["user_id"]]] @ item_factors_t
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        await respond(send, 200, {"user_id": request["user_id"], "items": item_ids[top].tolist(),
                                  "scores": scores[top].tolist()})

    return asgi
