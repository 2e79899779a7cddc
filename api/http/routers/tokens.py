"""令牌 API tokens: admin creates (shown once) and revokes; anyone can ask who they are."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.http import auth
from api.http.deps import Auth, Conn, require
from api.http.problems import ApiProblem, not_found
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND, Int32Path
from api.http.schemas.admin import TokenCreate, TokenCreated, TokenPublic, WhoAmI

router = APIRouter(prefix=API_PREFIX + "/tokens", tags=["tokens"], responses=AUTH)


@router.get("/me", summary="当前身份 Who am I")
def whoami(who: Auth) -> WhoAmI:
    return WhoAmI(token_id=who.token_id, name=who.name, role=who.role, enterprise_id=who.enterprise_id)


@router.get("", summary="令牌列表 List tokens (admin; no secrets)")
def list_tokens(who: Auth, conn: Conn, include_revoked: Annotated[bool, Query()] = False) -> list[TokenPublic]:
    require(who, "admin")
    return [TokenPublic.model_validate(t, from_attributes=True) for t in auth.list_tokens(conn, include_revoked)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND,
             summary="创建令牌 Create a token (admin; the token is shown once)")
def create_token(body: TokenCreate, who: Auth, conn: Conn) -> TokenCreated:
    require(who, "admin")
    try:
        rec, token = auth.create_token(conn, body.role, body.name, body.enterprise_id, created_by=who.name,
                                       expires_at=body.expires_at)
    except auth.TokenError as exc:
        raise ApiProblem(422, "invalid-token-request", "请求不完整 Invalid request", str(exc)) from exc
    return TokenCreated.model_validate({**rec.__dict__, "token": token})


@router.delete("/{token_id}", responses=NOT_FOUND, summary="吊销令牌 Revoke a token (admin)")
def revoke_token(token_id: Int32Path, who: Auth, conn: Conn) -> TokenPublic:
    require(who, "admin")
    rec = auth.revoke_token(conn, token_id)
    if rec is None:
        raise not_found("令牌", "Token", token_id)
    return TokenPublic.model_validate(rec, from_attributes=True)
