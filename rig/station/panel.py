"""The operator panel: a Starlette app on uvicorn serving one page (static HTML, CSS and JS in the
package: no build step, no CDN, since stations are often offline) and a small JSON API. Live
updates are server-sent events: the page gets the whole station when it connects (a reload or a
closed browser loses nothing) and each socket's state as it changes.

Requests that change something (start, answer, abort) are accepted only from the panel's own page:
they must carry the header X-Rig-Panel (a cross-site form cannot set one, and a cross-site script
that tries is stopped by the browser's preflight, which this server never grants) and, when the
browser sends an Origin, it must be this server's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rig.station.runner import Refused, Station

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PANEL_HEADER = "x-rig-panel"
KEEPALIVE_S = 15.0


def build_app(station: Station) -> Starlette:
    @asynccontextmanager
    async def lifespan(app):
        yield
        await station.shutdown()  # the station stops: every unit on test is aborted, its rig made safe

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def state(request: Request) -> Response:
        return JSONResponse(station.snapshot())

    async def events(request: Request) -> Response:
        queue: asyncio.Queue = asyncio.Queue()
        station.subscribers.add(queue)

        async def stream():
            try:
                yield _sse("state", station.snapshot())
                while True:
                    try:
                        kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"  # keeps proxies and the browser from giving up on a quiet shift
                        continue
                    yield _sse(kind, data)
            finally:
                station.subscribers.discard(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def start(request: Request) -> Response:
        body = await _checked_body(request)
        await station.start(str(body.get("socket", "")), str(body.get("serial", "")))
        return JSONResponse({"ok": True})

    async def answer(request: Request) -> Response:
        body = await _checked_body(request)
        try:
            prompt_id = int(body.get("prompt"))
        except (TypeError, ValueError):
            raise Refused(400, "which prompt? (prompt: its number)") from None
        await station.answer(str(body.get("socket", "")), prompt_id, str(body.get("answer", "")))
        return JSONResponse({"ok": True})

    async def abort(request: Request) -> Response:
        body = await _checked_body(request)
        await station.abort(str(body.get("socket", "")))
        return JSONResponse({"ok": True})

    async def certificate(request: Request) -> Response:
        return FileResponse(station.certificate(request.path_params["socket"]), media_type="text/html")

    async def refused(request: Request, exc: Refused) -> Response:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=exc.status)

    routes = [
        Route("/", index),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/start", start, methods=["POST"]),
        Route("/api/answer", answer, methods=["POST"]),
        Route("/api/abort", abort, methods=["POST"]),
        Route("/certificate/{socket}", certificate),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={Refused: refused})


def _sse(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


async def _checked_body(request: Request) -> dict:
    """Only the panel's own page may change anything (see the module's docstring)."""
    if request.headers.get(PANEL_HEADER) != "1":
        raise Refused(403, "only the station's panel may do this (header X-Rig-Panel missing)")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(403, f"request from another site ({origin}) refused")
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body is not a JSON object")
    return body


# ---------------------------------------------------------------------- serving
def make_server(station: Station, host: str, port: int):
    import signal
    from contextlib import contextmanager

    import uvicorn

    class StationServer(uvicorn.Server):
        @contextmanager
        def capture_signals(self):
            """Ctrl-C or SIGTERM stops the station like any command, exit status 0: uvicorn's own
            handling would raise the signal again after shutdown and end the process by it."""
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

    config = uvicorn.Config(build_app(station), host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=2, lifespan="on")
    return StationServer(config)
