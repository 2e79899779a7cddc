"""HTTP 接入 HTTP ingest (issue 18): `POST /api/v1/ingest`, a JSON v1 body and a gateway's own token.

For gateways that cannot speak MQTT. The body is judged by the collector's own pure decoder
(`ingest.decode.decode_json_v1`, same limits) before anything else; a body it would dead-letter as a whole
is answered 413 / 422 with the machine reason and its dead letter is written through the collector's store
function (`ingest.store.store_batch`), row for row as the MQTT path writes it. A body it accepts is bridged
onto the broker as the token's gateway (`api.http.ingest_bridge`) and answered only after the collector's
commit, so the rule engine, the dead letters of single readings and the exactly-once key are the MQTT path's.

The gateway is the token's, never the body's or the URL's: there is no gateway in the request at all.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.http.deps import AppContext
from api.http.ingest_bridge import BridgeTimeout, BridgeUnavailable, IngestBridge
from api.http.problems import ApiProblem, Problem
from api.http.queries import ingest as q
from api.http.routers._common import API_PREFIX
from core.tokens import GatewayToken, gateway_for_token
from ingest import topics
from ingest.batch import Batch, DeadLetter
from ingest.collector import DEAD_PAYLOAD_MAX
from ingest.decode import Decoded, MessageRejected, decode_json_v1
from ingest.reasons import explain
from ingest.store import store_batch

log = logging.getLogger("riskwatch.ingest.http")

RETRY_AFTER_S = 5

_bearer = HTTPBearer(auto_error=False, scheme_name="GatewayToken",
                     description="网关 HTTP 接入令牌 a gateway's ingest token (`rwg_…`, "
                                 "POST /api/v1/gateways/{id}/http-token); API tokens are not accepted")

router = APIRouter(prefix=API_PREFIX, tags=["ingest"])


class Rejected(BaseModel):
    index: int = Field(description="position of the reading in `readings`")
    reason: str = Field(description="machine reason, as in dead_letters.reason")
    message: str = Field(description="中文说明 and the decoder's detail")


class IngestResult(BaseModel):
    """What the collector committed for this body (or had committed before, for a retry)."""

    gateway_id: str
    seq: int
    stored_seq: int = Field(description="the gateway's highest seq durably stored (rw/v1/{gateway}/stored)")
    duplicate: bool = Field(description="the seq was already stored: a retry, not stored again")
    accepted: int = Field(description="readings that passed the decoder")
    rejected: list[Rejected] = Field(description="readings dead-lettered, each with its reason")
    unmapped_tags: list[str] = Field(description="tags the registry does not know: quarantined (unmapped_points)")


def _message(reason: str, detail: str) -> str:
    """The console's sentence for the reason (ingest.reasons, Chinese first), then the decoder's own detail."""
    return f"{explain(reason).zh} {reason}: {detail}"


def _gateway(ctx: AppContext, creds: HTTPAuthorizationCredentials | None) -> GatewayToken:
    """401 without a live gateway token (an API token included), 403 for a disabled gateway."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise ApiProblem(401, "unauthorized", "未认证 Unauthorized",
                         "需要网关接入令牌。 A gateway ingest token is required (Authorization: Bearer rwg_…).")
    with ctx.db.pool.connection() as conn:
        gw = gateway_for_token(conn, creds.credentials)
    if gw is None:
        raise ApiProblem(401, "unauthorized", "未认证 Unauthorized",
                         "网关接入令牌无效或已轮换。 The gateway ingest token is invalid or was rotated.")
    if not gw.enabled:
        raise ApiProblem(403, "gateway-disabled", "网关已停用 Gateway disabled",
                         f"网关 {gw.gateway_id} 已停用，数据不予接收。 Gateway {gw.gateway_id} is disabled: "
                         "nothing it sends is stored.", gateway_id=gw.gateway_id)
    return gw


def _dead_letter(ctx: AppContext, gateway_id: str, payload: bytes, exc: MessageRejected) -> None:
    """The collector's own dead letter for this body, through its store function, committed before the answer."""
    batch = Batch(messages=1)
    batch.dead.append(DeadLetter(gateway_id, topics.telemetry(gateway_id), exc.reason, exc.detail, None,
                                 payload[:DEAD_PAYLOAD_MAX]))
    with ctx.db.pool.connection() as conn, conn.transaction():
        store_batch(conn, batch)


def _stored_seq(ctx: AppContext, gateway_id: str) -> int:
    with ctx.db.pool.connection() as conn:
        return q.stored_seq(conn, gateway_id)


def _result(gw: str, d: Decoded, seq: int, stored: int, duplicate: bool, pmap: dict[str, int]) -> IngestResult:
    return IngestResult(
        gateway_id=gw, seq=seq, stored_seq=stored, duplicate=duplicate, accepted=len(d.tags),
        rejected=[Rejected(index=r.index, reason=r.reason, message=_message(r.reason, r.detail)) for r in d.rejected],
        unmapped_tags=sorted({t for t in d.tags if t not in pmap}))


def _ingest(ctx: AppContext, bridge: IngestBridge | None, creds: HTTPAuthorizationCredentials | None,
            payload: bytes) -> IngestResult:
    gw = _gateway(ctx, creds).gateway_id
    try:
        d = decode_json_v1(payload, ctx.clock.now(), ctx.settings.limits)
    except MessageRejected as exc:
        _dead_letter(ctx, gw, payload, exc)
        status = 413 if exc.reason == "payload_too_large" else 422
        raise ApiProblem(status, exc.reason, "消息被拒收 Message rejected", _message(exc.reason, exc.detail),
                         reason=exc.reason, dead_lettered=True) from None
    if d.seq is None:
        raise ApiProblem(422, "missing-seq", "缺少消息序号 seq required",
                         "HTTP 接入的消息须带递增的整数 seq（0 至 2^63-1），用于确认已入库与安全重试。 "
                         "An HTTP ingest body needs an increasing integer `seq` (0..2^63-1): it is how the answer "
                         "confirms the commit and how a retry stays exactly once.")
    if bridge is None:
        raise ApiProblem(503, "ingest-unavailable", "HTTP 接入未启用 HTTP ingest unavailable",
                         "本服务未配置 HTTP 接入桥（RISKWATCH_MQTT_BRIDGE_URL）。 This server has no HTTP ingest "
                         "bridge configured (RISKWATCH_MQTT_BRIDGE_URL).")
    with ctx.db.pool.connection() as conn:
        pmap = q.point_ids(conn, gw, d.tags)
    try:
        done = bridge.send(gw, payload, d.seq, lambda: _stored_seq(ctx, gw))
    except BridgeUnavailable:
        raise _unavailable("HTTP 接入桥暂未连接消息服务器，本次数据未发送。 The ingest bridge is not connected "
                           "to the broker: nothing was sent.") from None
    except BridgeTimeout as exc:
        log.warning("HTTP ingest of %s seq %d not confirmed: %s", gw, d.seq, exc)
        raise _unavailable(f"在 {bridge.timeout_s:g} 秒内未收到入库确认；数据可能已入库，用相同 seq 重试是安全的"
                           f"（重复读数只存一次）。 No confirmation within {bridge.timeout_s:g} s: the body may "
                           "already be stored; retrying with the same seq is safe (duplicates are stored once).",
                           may_be_stored=True) from None
    if not done.published and not _already_stored(ctx, d, pmap):
        raise ApiProblem(409, "seq-not-increasing", "消息序号未递增 seq not increasing",
                         f"seq {d.seq} 不大于已入库的 {done.stored_seq}，且本消息的读数并未入库：请从 "
                         f"{done.stored_seq + 1} 起编号。 seq {d.seq} is not above the stored {done.stored_seq} and "
                         f"this body's readings are not stored: number messages from {done.stored_seq + 1} on.",
                         stored_seq=done.stored_seq)
    if not d.tags and d.rejected:
        raise ApiProblem(422, "no-valid-readings", "读数全部被拒收 Every reading rejected",
                         "; ".join(_message(r.reason, r.detail) for r in d.rejected[:20]),
                         reason=d.rejected[0].reason, dead_lettered=True, stored_seq=done.stored_seq)
    return _result(gw, d, d.seq, done.stored_seq, not done.published, pmap)


def _already_stored(ctx: AppContext, d: Decoded, pmap: dict[str, int]) -> bool:
    """A covered seq is a retry when every mapped reading of the body is in `readings`."""
    pairs = [(pmap[t], us) for t, us in zip(d.tags, d.times_us, strict=True) if t in pmap]
    with ctx.db.pool.connection() as conn:
        have = q.stored_count(conn, [p for p, _ in pairs], [us for _, us in pairs])
    return have == len(set(pairs))


class NotConfirmed(HTTPException):
    """503 with Retry-After: an HTTPException so the problem handler keeps its headers (ApiProblem has none)."""

    code = "ingest-not-confirmed"

    def __init__(self, detail: str, **extra: Any):
        super().__init__(503, detail, headers={"Retry-After": str(RETRY_AFTER_S)})
        self.problem_extra = {"retry_after_s": RETRY_AFTER_S, **extra}


def _unavailable(detail: str, **extra: Any) -> NotConfirmed:
    return NotConfirmed(detail, **extra)


#: The JSON v1 body of the MQTT contract, for the document (the decoder, not pydantic, judges it: same reasons).
JSON_V1 = {"type": "object", "required": ["seq", "readings"], "properties": {
    "seq": {"type": "integer", "minimum": 0, "description": "increasing per gateway; a retry repeats it"},
    "ts": {"description": "epoch ms or RFC 3339 with offset: the readings' time when they carry none"},
    "readings": {"type": "array", "maxItems": 5000, "items": {"type": "object", "required": ["tag", "v"],
                 "properties": {"tag": {"type": "string", "minLength": 1, "maxLength": 64}, "v": {"type": "number"},
                                "ts": {}, "q": {"enum": ["good", "uncertain", "bad"]}}}}},
    "example": {"seq": 42, "ts": 1767225600000, "readings": [{"tag": "TT-101", "v": 71.2}]}}


@router.post("/ingest", response_model=IngestResult,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": JSON_V1}}}},
             summary="HTTP 接入 Post a JSON v1 body as the token's gateway",
             responses={401: {"model": Problem, "description": "无网关令牌或令牌无效 No or no live gateway token"},
                        403: {"model": Problem, "description": "网关已停用 The gateway is disabled"},
                        409: {"model": Problem, "description": "seq 未递增且读数未入库 seq behind what is stored"},
                        413: {"model": Problem, "description": "消息体过大 payload_too_large (dead-lettered)"},
                        422: {"model": Problem, "description": "消息无效 The decoder's reason (dead-lettered), or "
                                                                "missing-seq"},
                        503: {"model": Problem, "description": "未确认入库 Not confirmed in time (Retry-After); a "
                                                                "retry with the same seq is safe"}})
async def ingest(request: Request,
                 creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> IngestResult:
    """Store a JSON v1 body (the MQTT contract's, with a `seq`) and answer once the collector committed it."""
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    payload = await request.body()  # the body limit (api.http.limits) still applies as it streams in
    bridge = getattr(request.app.state, "ingest_bridge", None)
    return await run_in_threadpool(_ingest, ctx, bridge, creds, payload)
