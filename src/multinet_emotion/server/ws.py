"""The learner WebSocket: camera frames in, emotions and recommendations out.

Protocol (JSON text messages, binary frames):

* client -> ``{"type": "hello", "token": LEARNER_TOKEN, "session_id": ID}`` first (the token
  travels in the message, not the URL, so it never reaches access logs);
* server -> ``{"type": "ready", "analysis": bool, "frame_rate": 2, ...}``;
* client -> binary JPEG/PNG/WebP frames, or ``{"type": "sample", "probs": {...}}`` from a
  client that classified on its own, or ``{"type": "ping"}``;
* server -> ``{"type": "result", "seq": n, "faces": [...], "current": {...}, "ms": ...}``
  per frame (each face has ``label``, the top class of its raw reading, ``smoothed_label``,
  the top class of its smoothed probabilities, and ``stable_label``, the one to show;
  ``current.label`` is the learner's shown, stable label), preceded by
  ``{"type": "recommendation", "recommendation": {...}}`` when that frame led to one,
  and ``{"type": "error", "seq": n, "message": ...}`` for a bad frame, a frame over the
  rate limit, one replaced by a newer frame before it was analysed (only
  the newest waiting frame is analysed), or one whose result could not be stored (e.g. the
  database was busy); the connection stays up. When the session ends or is deleted the
  server sends an error and closes (1008); on an unexpected server error it closes (1011).

Frames are decoded and analysed in memory and dropped; neither they nor their bytes are
stored or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..errors import MultiNetError
from .analysis import FrameError, decode_frame
from .schemas import SampleIn, recommendation_out
from .service import LearningService, RawSample, ServiceError

log = logging.getLogger(__name__)
router = APIRouter()

HELLO_TIMEOUT = 15.0


async def _send(ws: WebSocket, data: dict[str, Any]) -> None:
    await ws.send_text(json.dumps(data, separators=(",", ":")))


def _short(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'message'}: {e['msg']}"
                     for e in err.errors(include_input=False, include_url=False))


@router.websocket("/ws/learn")
async def learn(ws: WebSocket) -> None:
    state = ws.app.state
    svc: LearningService = state.service
    settings = state.settings
    await ws.accept()
    try:
        try:
            hello = json.loads(await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT))
            token, session_id = hello["token"], hello["session_id"]
            if hello.get("type") != "hello" or not isinstance(token, str) \
                    or not isinstance(session_id, str):
                raise ValueError
        except (TimeoutError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            await _send(ws, {"type": "error", "message": 'send {"type": "hello", "token": ..., '
                                                         '"session_id": ...} first'})
            await ws.close(code=1008)
            return
        learner_id = await run_in_threadpool(svc.learner_for_token, token)
        try:
            if learner_id is None:
                raise ServiceError("unknown or revoked learner token; sign up again")
            await run_in_threadpool(svc.session, learner_id, session_id)
        except ServiceError as e:
            await _send(ws, {"type": "error", "message": str(e)})
            await ws.close(code=1008)
            return
        analyzer = None
        if state.analyzer_factory is not None:
            analyzer = await run_in_threadpool(state.analyzer_factory)
        await _send(ws, {"type": "ready", "analysis": analyzer is not None,
                         "analysis_note": state.analysis_note,
                         "frame_rate": settings.frame_rate,
                         "frame_width": settings.frame_width,
                         "max_frame_bytes": settings.max_frame_bytes})
        stream = _Stream(ws, svc, settings, analyzer, learner_id, session_id,
                         state.analysis_slots, state.analysis_note)
        await stream.run()
    except WebSocketDisconnect:
        pass
    except ServiceError as e:  # e.g. the learner deleted their data mid-stream
        try:
            await _send(ws, {"type": "error", "message": str(e)})
            await ws.close(code=1008)
        except Exception:  # noqa: BLE001
            pass
    except Exception as e:  # noqa: BLE001 - e.g. the database is down: close, no traceback
        log.error("learner connection failed: %s", type(e).__name__)  # never the payload
        try:
            await _send(ws, {"type": "error", "message": "internal server error; reconnect "
                                                         "later"})
            await ws.close(code=1011)
        except Exception:  # noqa: BLE001
            pass


class _Stream:
    """One learner's connection after the hello.

    A reader takes every message at once; frames go to a one-slot mailbox that an analyst
    empties. When frames arrive faster than they can be analysed, only the newest waits:
    the older one is answered "skipped" at once, so latency stays bounded under load and
    every frame gets an answer.
    """

    def __init__(self, ws: WebSocket, svc: LearningService, settings: Any, analyzer: Any,
                 learner_id: str, session_id: str, slots: asyncio.Semaphore, note: str):
        self.ws, self.svc, self.settings, self.analyzer = ws, svc, settings, analyzer
        self.learner_id, self.session_id = learner_id, session_id
        self.slots, self.note = slots, note
        self.seq = 0
        self.bucket = _RateLimit(settings.max_frame_rate)
        self.waiting: tuple[int, bytes, float] | None = None
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Read and analyse until the client leaves; a ServiceError (the session ended or
        was deleted) or an unexpected error is re-raised, unwrapped from the task group's
        exception group, for :func:`learn` to answer and close."""
        self.failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                self.scope = tg.cancel_scope
                tg.start_soon(self.analyse)
                await self.read()  # until the client leaves (or the analyst gives up)
                tg.cancel_scope.cancel()
        except* WebSocketDisconnect:
            pass
        except* ServiceError as group:
            self.failure = _first(group)
        except* Exception as group:  # noqa: BLE001 - unexpected: learn() logs and closes
            if self.failure is None:
                self.failure = _first(group)
        if self.failure is not None:
            raise self.failure

    async def error(self, message: str, seq: int | None = None) -> None:
        await _send(self.ws, {"type": "error", **({"seq": seq} if seq else {}),
                              "message": message})

    async def read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("bytes") is not None:
                await self.frame(msg["bytes"])
            elif msg.get("text") is not None:
                await self.text(msg["text"])

    async def frame(self, data: bytes) -> None:
        self.seq += 1
        if self.analyzer is None:
            return await self.error(f"server-side analysis is unavailable: {self.note}",
                                    self.seq)
        if not self.bucket.take():
            return await self.error(f"too many frames: at most {self.settings.max_frame_rate:g}"
                                    " per second; this one was skipped", self.seq)
        if self.waiting is not None:
            await self.error("skipped: a newer frame arrived before this one was analysed",
                             self.waiting[0])
        self.waiting = (self.seq, data, time.perf_counter())
        self.wake.set()

    async def analyse(self) -> None:
        try:
            await self._analyse()
        except WebSocketDisconnect:  # the client is gone
            self.scope.cancel()
        except Exception as e:  # noqa: BLE001 - e.g. the session is gone: run() re-raises it
            self.failure = e
            self.scope.cancel()

    async def _analyse(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.waiting is None:
                continue
            seq, data, t0 = self.waiting
            self.waiting = None
            try:
                async with self.slots:
                    faces = await run_in_threadpool(_analyze, self.analyzer, data, self.settings)
            except FrameError as e:
                await self.error(str(e), seq)
                continue
            except Exception as e:  # noqa: BLE001 - one bad frame must not end the stream
                log.error("frame analysis failed: %s", type(e).__name__)
                await self.error("this frame could not be analysed", seq)
                continue
            del data
            try:
                current, rec = await run_in_threadpool(self.svc.add_faces, self.learner_id,
                                                       self.session_id, faces)
                messages = _result(seq, faces, current, rec, t0)
            except ServiceError:  # the session ended or was deleted: close the connection
                raise
            except Exception as e:  # noqa: BLE001 - e.g. the database is busy: keep streaming
                log.error("storing a frame's result failed: %s", type(e).__name__)
                await self.error("this frame's result could not be stored; the next frame "
                                 "will be tried", seq)
                continue
            await self.send_all(messages)

    async def send_all(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            await _send(self.ws, message)

    async def text(self, text: str) -> None:
        t0 = time.perf_counter()
        try:
            data = json.loads(text)
            kind = data.get("type") if isinstance(data, dict) else None
        except ValueError:
            kind = None
        if kind == "ping":
            return await _send(self.ws, {"type": "pong"})
        if kind != "sample":
            return await self.error('unknown message; send image frames as binary, or '
                                    '{"type": "sample", ...}')
        self.seq += 1
        try:
            s = SampleIn(**{k: v for k, v in data.items() if k != "type"})
        except (ValidationError, TypeError) as e:
            return await self.error(_short(e) if isinstance(e, ValidationError) else str(e),
                                    self.seq)
        raw = RawSample.from_client(self.svc.clock(), s.probs if s.face else None,
                                    s.confidence)
        try:
            _, rec = await run_in_threadpool(self.svc.add_samples, self.learner_id,
                                             self.session_id, [raw], False)
            live = await run_in_threadpool(self.svc.session, self.learner_id, self.session_id)
            messages = _result(self.seq, [], live.current, rec, t0)
        except ServiceError as e:
            return await self.error(str(e), self.seq)
        except Exception as e:  # noqa: BLE001 - e.g. the database is busy: keep streaming
            log.error("storing a sample failed: %s", type(e).__name__)
            return await self.error("this sample could not be stored; send the next one",
                                    self.seq)
        await self.send_all(messages)


def _result(seq: int, faces: list, current: Any, rec: Any, t0: float) -> list[dict[str, Any]]:
    """The answer to one frame or sample: the recommendation it led to first (so a client
    reading up to the result sees both), then the result."""
    out = []
    if rec is not None:
        out.append({"type": "recommendation", "seq": seq,
                    "recommendation": recommendation_out(rec).model_dump()})
    out.append({"type": "result", "seq": seq, "faces": faces, "current": current,
                "ms": round((time.perf_counter() - t0) * 1000, 1)})
    return out


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first exception in a (possibly nested) exception group."""
    e: BaseException = group
    while isinstance(e, BaseExceptionGroup):
        e = e.exceptions[0]
    return e


class _RateLimit:
    """A token bucket: ``rate`` frames per second on average, bursts of up to ``rate``."""

    def __init__(self, rate: float):
        self.rate, self.tokens, self.last = rate, rate, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _analyze(analyzer: Any, data: bytes, settings: Any) -> list[dict[str, Any]]:
    frame = decode_frame(data, settings.max_frame_bytes, settings.max_frame_side)
    try:
        faces = analyzer.analyze(frame)
    except MultiNetError as e:
        raise FrameError(str(e)) from None
    del frame
    return [_public_face(f) for f in faces]


def _public_face(f: dict[str, Any]) -> dict[str, Any]:
    keep = ("track_id", "box", "probs", "label", "smoothed", "smoothed_label", "stable_label",
            "confidence")
    out = {k: f.get(k) for k in keep}
    for k in ("probs", "smoothed"):
        if isinstance(out[k], dict):
            out[k] = {e: round(float(p), 4) for e, p in out[k].items()}
    if out["box"] is not None:
        out["box"] = [int(x) for x in out["box"]]
    return out
