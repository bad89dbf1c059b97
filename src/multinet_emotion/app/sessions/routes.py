"""The learner WebSocket: camera frames in, emotions and recommendations out.

Protocol (JSON text messages, binary frames; the messages are typed in :mod:`.messages`,
and their JSON Schema is served at ``GET /api/ws-schema``):

* client -> ``{"type": "hello", "token": LEARNER_TOKEN, "session_id": ID}`` first (the token
  travels in the message, not the URL, so it never reaches access logs);
* server -> ``{"type": "ready", "analysis": bool, "frame_rate": 2, ...}``;
* client -> binary JPEG/PNG/WebP frames, or ``{"type": "sample", "probs": {...}}`` from a
  client that classified on its own, or ``{"type": "ping"}`` (answered ``{"type": "pong"}``);
* server -> ``{"type": "result", "seq": n, "faces": [...], "current": {...}, "ms": ...}``
  per frame (each face has ``label``, the top class of its raw reading, ``smoothed_label``,
  the top class of its smoothed probabilities, ``shown_label``, the one to show, and
  ``shown_share``, its own probability; ``current.label`` is the learner's shown label and
  ``current.share`` its probability), preceded by
  ``{"type": "recommendation", "recommendation": {...}}`` when that frame led to one,
  and ``{"type": "error", "seq": n, "message": ...}`` for a bad frame or sample, a frame
  over the rate limit, one replaced by a newer frame before it was analysed (only
  the newest waiting frame is analysed), or one whose result could not be stored (e.g. the
  database was busy); the connection stays up. A text message that is not understood gets
  an error without ``seq``. When the session ends or is deleted the server sends an error
  and closes (1008); on an unexpected server error it closes (1011).

A hello for a session that has ended is refused (an error, then close 1008). When the
learner's token is replaced or the learner is deleted, every open connection of that
learner is told why and closed at once (1008, reason "token revoked"); nothing it sends
afterwards is stored (:class:`Connections`, one registry per process; with PostgreSQL a
revocation in one process reaches the others by NOTIFY, see ``IngestService.revoke_here``).
A browser's handshake must come from an allowed origin (``allowed_origins``; by default the
page's own: the origin's host must be the request's Host); others are refused (1008, which
an ASGI server answers with HTTP 403). Clients that send no Origin (not browsers) pass.

Frames are decoded and analysed in memory and dropped; neither they nor their bytes are
stored or logged. The analyser gives one :class:`~multinet_emotion.emotions.Reading` per
face, stamped with the time the frame arrived; the service takes them as they are, and the
answer is made here, from the message models (:meth:`Reading.face_json` for the faces,
:meth:`Reading.sample_json` for the learner's state).
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

from ...emotions import Reading
from ...errors import MultiNetError
from ..analysis import AnalysisSlots, FrameError, decode_frame
from ..connections import (
    REVOKED_CODE,
    Connection,
    origin_allowed,
    parse_origins,
)
from ..context import AppContext, context_of
from ..learners.consent import require_current_consent
from ..messages import (
    HELLO_FIRST,
    UNKNOWN_MESSAGE,
    Current,
    ErrorMessage,
    Face,
    Hello,
    Pong,
    Ready,
    RecommendationMessage,
    Result,
    Sample,
    json_schema,
)
from ..schemas import recommendation_out
from ..service import IngestService, ServiceError, client_reading

log = logging.getLogger(__name__)
router = APIRouter()

HELLO_TIMEOUT = 15.0
#: The JSON Schema of the messages (:func:`.messages.json_schema`), made once.
SCHEMA = json_schema()

Reply = Ready | Result | RecommendationMessage | ErrorMessage | Pong


async def _send(ws: WebSocket, message: Reply) -> None:
    await ws.send_text(message.encode())


def _short(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'message'}: {e['msg']}"
                     for e in err.errors(include_input=False, include_url=False))


@router.get("/api/ws-schema", tags=["service"], response_model=dict[str, Any],
            summary="JSON Schema of the learner WebSocket's messages (/ws/learn)",
            description="Every text message is one of $defs/ClientMessage (page to server) "
                        "or $defs/ServerMessage (server to page); frames are binary.")
def ws_schema() -> dict[str, Any]:
    return SCHEMA


@router.websocket("/ws/learn")
async def learn(ws: WebSocket) -> None:
    state = context_of(ws)
    svc: IngestService = state.service.ingest
    settings = state.settings
    address = await _admitted(ws, state)
    if address is None:
        return
    conn: Connection | None = None
    try:
        try:
            text = await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT)
            hello = Hello.model_validate_json(text)  # a ValidationError is a ValueError
        except (TimeoutError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            await _send(ws, ErrorMessage(message=HELLO_FIRST))
            await ws.close(code=1008)
            return
        token, session_id = hello.token, hello.session_id
        learner_id = await run_in_threadpool(svc.learner_for_token, token)
        try:
            if learner_id is None:
                raise ServiceError("unknown or revoked learner token; sign up again")
            # registered before the token is looked up again: a rotation from now on
            # reaches this connection, and one before it is seen by the second look-up
            conn = state.connections.add(learner_id)
            row = await run_in_threadpool(svc.token_learner, token)
            if row is None or row.id != learner_id:
                raise ServiceError("unknown or revoked learner token; sign up again")
            require_current_consent(settings, row.consent_version)
            await run_in_threadpool(svc.open_session, learner_id, session_id)
            conn.session_id = session_id  # ending the session closes it
            # one connection per learner: the newest (a database NOTIFY with PostgreSQL)
            await run_in_threadpool(state.connections.take_over, conn)
        except ServiceError as e:
            await _send(ws, ErrorMessage(message=str(e)))
            await ws.close(code=1008)
            return
        factory = state.analyzer_factory  # the analyzer is made at the first frame
        await _send(ws, Ready(analysis=factory is not None, analysis_note=state.analysis_note,
                              frame_rate=settings.frame_rate, frame_width=settings.frame_width,
                              max_frame_bytes=settings.max_frame_bytes))
        stream = _Stream(ws, svc, settings, factory, learner_id, session_id,
                         state.analysis_slots, state.analysis_note, conn)
        if conn.revoked is None:
            await stream.run()
        if conn.revoked is not None:  # the token was replaced or the learner deleted
            await _send(ws, ErrorMessage(message=conn.revoked))
            await ws.close(code=REVOKED_CODE, reason=conn.close_reason)
    except WebSocketDisconnect:
        pass
    except ServiceError as e:  # e.g. the learner deleted their data mid-stream
        await _close_quietly(ws, str(e), 1008)
    except Exception as e:  # noqa: BLE001 - e.g. the database is down: close, no traceback
        log.error("learner connection failed: %s", type(e).__name__)  # never the payload
        await _close_quietly(ws, "internal server error; reconnect later", 1011)
    finally:
        await _release(state, svc, address, conn)


async def _admitted(ws: WebSocket, state: AppContext) -> str | None:
    """Accept a handshake from an allowed origin, and count it against its address's
    connections: the client's address, or None when refused (and closed)."""
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"),
                          parse_origins(state.settings.allowed_origins)):
        log.warning("learner connection refused: origin not allowed")
        await ws.close(code=1008)  # before accepting: the ASGI server answers 403
        return None
    await ws.accept()
    address = ws.client.host if ws.client is not None else "unknown"
    try:
        state.connections.open_address(address)
    except ServiceError as e:
        log.warning("learner connection refused: too many from one address")
        await _send(ws, ErrorMessage(message=str(e)))
        await ws.close(code=1008, reason="too many connections")
        return None
    return address


async def _close_quietly(ws: WebSocket, message: str, code: int) -> None:
    """Tell the page why, and close; a connection already gone is no error."""
    try:
        await _send(ws, ErrorMessage(message=message))
        await ws.close(code=code)
    except Exception:  # noqa: BLE001
        pass


async def _release(state: AppContext, svc: IngestService, address: str, conn: Connection | None
                   ) -> None:
    """A closed connection's address slot and registration given back, and the readings of
    its current second stored now, not lost."""
    state.connections.close_address(address)
    if conn is None:
        return
    state.connections.remove(conn)
    if conn.session_id is not None and conn.revoked is None:
        try:
            with anyio.CancelScope(shield=True):  # also when the task is cancelled
                await run_in_threadpool(svc.flush_session, conn.learner_id, conn.session_id)
        except Exception as e:  # noqa: BLE001 - e.g. the database is down
            log.error("storing a closed connection's last readings failed: %s",
                      type(e).__name__)


class _Stream:
    """One learner's connection after the hello.

    A reader takes every message at once; frames go to a one-slot mailbox that an analyst
    empties. When frames arrive faster than they can be analysed, only the newest waits:
    the older one is answered "skipped" at once, so latency stays bounded under load and
    every frame gets an answer.
    """

    def __init__(self, ws: WebSocket, svc: IngestService, settings: Any, factory: Any,
                 learner_id: str, session_id: str, slots: AnalysisSlots, note: str,
                 conn: Connection):
        self.ws, self.svc, self.settings = ws, svc, settings
        # made at the first frame, not at the hello: a page that analyses in the browser
        # sends samples only, and loading a face detector per connection would cost more
        # server CPU than all its samples
        self.factory = factory
        self.analyzer: Any = None  # anything with analyze(frame, t) (the tests inject fakes)
        self.learner_id, self.session_id = learner_id, session_id
        self.conn = conn
        self.slots, self.note = slots, note
        self.seq = 0
        self.bucket = _RateLimit(settings.max_frame_rate)
        # the newest frame not analysed yet: (seq, bytes, perf_counter, arrival time)
        self.waiting: tuple[int, bytes, float, float] | None = None
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Read and analyse until the client leaves; a ServiceError (the session ended or
        was deleted) or an unexpected error is re-raised, unwrapped from the task group's
        exception group, for :func:`learn` to answer and close."""
        self.failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                self.scope = tg.cancel_scope
                self.conn.stop = tg.cancel_scope.cancel  # a revoked token ends the stream
                if self.conn.revoked is not None:
                    tg.cancel_scope.cancel()
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
        await _send(self.ws, ErrorMessage(seq=seq or None, message=message))

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
        if self.factory is None:
            return await self.error(f"server-side analysis is unavailable: {self.note}",
                                    self.seq)
        if not self.bucket.take():
            return await self.error(f"too many frames: at most {self.settings.max_frame_rate:g}"
                                    " per second; this one was skipped", self.seq)
        if self.waiting is not None:
            await self.error("skipped: a newer frame arrived before this one was analysed",
                             self.waiting[0])
        self.waiting = (self.seq, data, time.perf_counter(), self.svc.clock())
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
            seq, data, t0, t = self.waiting
            self.waiting = None
            try:
                if self.analyzer is None:
                    self.analyzer = await run_in_threadpool(self.factory)
                async with self.slots:
                    pressed = getattr(self.analyzer, "pressed", None)
                    if pressed is not None:
                        pressed(self.slots.busy)
                    faces = await run_in_threadpool(_analyze, self.analyzer, data, t,
                                                    self.settings)
            except FrameError as e:
                await self.error(str(e), seq)
                continue
            except Exception as e:  # noqa: BLE001 - one bad frame must not end the stream
                log.error("frame analysis failed: %s", type(e).__name__)
                await self.error("this frame could not be analysed", seq)
                continue
            del data
            if self.conn.revoked is not None:  # the token stopped working: store nothing
                return
            try:
                current, rec = await run_in_threadpool(self.svc.add_faces, self.learner_id,
                                                       self.session_id, faces, t)
                messages = _result(seq, faces, current, rec, t0)
            except ServiceError:  # the session ended or was deleted: close the connection
                raise
            except Exception as e:  # noqa: BLE001 - e.g. the database is busy: keep streaming
                log.error("storing a frame's result failed: %s", type(e).__name__)
                await self.error("this frame's result could not be stored; the next frame "
                                 "will be tried", seq)
                continue
            await self.send_all(messages)

    async def send_all(self, messages: list[Reply]) -> None:
        for message in messages:
            await _send(self.ws, message)

    async def text(self, text: str) -> None:
        """A text message after the hello: a ping, or a sample of a client that classified
        on its own (checked with :class:`~.messages.Sample`, answered like a frame)."""
        t0 = time.perf_counter()
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python goes
            data = None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "ping":
            return await _send(self.ws, Pong())
        if kind != "sample":
            return await self.error(UNKNOWN_MESSAGE)
        self.seq += 1
        try:
            s = Sample.model_validate(data)
        except ValidationError as e:
            return await self.error(_short(e), self.seq)
        reading = client_reading(self.svc.clock(), s.probs if s.face else None, s.confidence,
                                 s.label)
        if self.conn.revoked is not None:  # the token stopped working: store nothing
            return
        try:
            current, rec = await run_in_threadpool(self.svc.add_reading, self.learner_id,
                                                   self.session_id, reading, s.labelled)
            messages = _result(self.seq, [], current, rec, t0)
        except ServiceError as e:
            return await self.error(str(e), self.seq)
        except Exception as e:  # noqa: BLE001 - e.g. the database is busy: keep streaming
            log.error("storing a sample failed: %s", type(e).__name__)
            return await self.error("this sample could not be stored; send the next one",
                                    self.seq)
        await self.send_all(messages)


def _result(seq: int, faces: list[Reading], current: Reading | None, rec: Any,
            t0: float) -> list[Reply]:
    """The answer to one frame or sample: the recommendation it led to first (so a client
    reading up to the result sees both), then the result (each face's JSON, and the
    learner's shown state)."""
    out: list[Reply] = []
    if rec is not None:
        out.append(RecommendationMessage(seq=seq, recommendation=recommendation_out(rec)))
    out.append(Result(seq=seq, faces=[Face.model_validate(f.face_json()) for f in faces],
                      current=None if current is None else Current.model_validate(current.sample_json()),
                      ms=round((time.perf_counter() - t0) * 1000, 1)))
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


def _analyze(analyzer: Any, data: bytes, t: float, settings: Any) -> list[Reading]:
    frame = decode_frame(data, settings.max_frame_bytes, settings.max_frame_side)
    try:
        faces = analyzer.analyze(frame, t)
    except MultiNetError as e:
        raise FrameError(str(e)) from None
    del frame
    return [f for f in faces if f.face]
