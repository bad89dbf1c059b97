"""The learner WebSocket: camera frames in, emotions and recommendations out.

Protocol (JSON text messages, binary frames):

* client -> ``{"type": "hello", "token": LEARNER_TOKEN, "session_id": ID}`` first (the token
  travels in the message, not the URL, so it never reaches access logs);
* server -> ``{"type": "ready", "analysis": bool, "frame_rate": 2, ...}``;
* client -> binary JPEG/PNG/WebP frames, or ``{"type": "sample", "probs": {...}}`` from a
  client that classified on its own, or ``{"type": "ping"}``;
* server -> ``{"type": "result", "seq": n, "faces": [...], "current": {...}, "ms": ...}``
  per frame, ``{"type": "recommendation", "recommendation": {...}}`` when one is made, and
  ``{"type": "error", "seq": n, "message": ...}`` for a bad frame; the connection stays up.

Frames are decoded and analysed in memory and dropped; neither they nor their bytes are
stored or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..emotions import EMOTIONS
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
        except (asyncio.TimeoutError, ValueError, KeyError, TypeError, UnicodeDecodeError):
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
        seq = 0
        bucket = _RateLimit(settings.max_frame_rate)
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            t0 = time.perf_counter()
            if msg.get("bytes") is not None:
                seq += 1
                if analyzer is None:
                    await _send(ws, {"type": "error", "seq": seq,
                                     "message": "server-side analysis is unavailable: "
                                                f"{state.analysis_note}"})
                    continue
                if not bucket.take():
                    await _send(ws, {"type": "error", "seq": seq,
                                     "message": f"too many frames: at most "
                                                f"{settings.max_frame_rate:g} per second; this "
                                                "one was skipped"})
                    continue
                try:
                    async with state.analysis_slots:
                        faces = await run_in_threadpool(_analyze, analyzer, msg["bytes"],
                                                        settings)
                except FrameError as e:
                    await _send(ws, {"type": "error", "seq": seq, "message": str(e)})
                    continue
                except Exception as e:  # noqa: BLE001 - one bad frame must not end the stream
                    log.error("frame analysis failed: %s", type(e).__name__)
                    await _send(ws, {"type": "error", "seq": seq,
                                     "message": "this frame could not be analysed"})
                    continue
                current, rec = await run_in_threadpool(svc.add_faces, learner_id,
                                                       session_id, faces)
            elif msg.get("text") is not None:
                try:
                    data = json.loads(msg["text"])
                    kind = data.get("type") if isinstance(data, dict) else None
                except ValueError:
                    kind = None
                if kind == "ping":
                    await _send(ws, {"type": "pong"})
                    continue
                if kind != "sample":
                    await _send(ws, {"type": "error", "message": "unknown message; send image "
                                     'frames as binary, or {"type": "sample", ...}'})
                    continue
                seq += 1
                try:
                    s = SampleIn(**{k: v for k, v in data.items() if k != "type"})
                except (ValidationError, TypeError) as e:
                    msg_text = _short(e) if isinstance(e, ValidationError) else str(e)
                    await _send(ws, {"type": "error", "seq": seq, "message": msg_text})
                    continue
                raw = RawSample(svc.clock(), tuple(s.probs[e] for e in EMOTIONS)
                                if s.face and s.probs else None, s.confidence)
                faces = []
                try:
                    _, rec = await run_in_threadpool(svc.add_samples, learner_id, session_id,
                                                     [raw], False)
                except ServiceError as e:
                    await _send(ws, {"type": "error", "seq": seq, "message": str(e)})
                    continue
                current = (await run_in_threadpool(svc.session, learner_id, session_id)).current
            else:
                continue
            await _send(ws, {"type": "result", "seq": seq, "faces": faces, "current": current,
                             "ms": round((time.perf_counter() - t0) * 1000, 1)})
            if rec is not None:
                await _send(ws, {"type": "recommendation",
                                 "recommendation": recommendation_out(rec).model_dump()})
    except WebSocketDisconnect:
        pass
    except ServiceError as e:  # e.g. the learner deleted their data mid-stream
        try:
            await _send(ws, {"type": "error", "message": str(e)})
            await ws.close(code=1008)
        except Exception:  # noqa: BLE001
            pass


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
    keep = ("track_id", "box", "probs", "label", "smoothed", "smoothed_label", "confidence")
    out = {k: f.get(k) for k in keep}
    for k in ("probs", "smoothed"):
        if isinstance(out[k], dict):
            out[k] = {e: round(float(p), 4) for e, p in out[k].items()}
    if out["box"] is not None:
        out["box"] = [int(x) for x in out["box"]]
    return out
