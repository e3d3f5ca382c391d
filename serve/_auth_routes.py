"""``/auth/*`` and the JWKS: adapters that validate, call the auth actor, and shape answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse

from actors.auth.errors import SessionNotFoundError
from actors.auth.service import MfaChallenge
from serve._auth import AUTH_GROUP, AUTHENTICATED, PUBLIC, Principal, Require, request_client
from serve.schemas import (
    LoginIn,
    MeOut,
    MfaCodeIn,
    MfaDisableIn,
    MfaEnrollOut,
    MfaRequiredOut,
    MfaVerifyIn,
    RecoveryCodesOut,
    RefreshIn,
    RegisterIn,
    SessionOut,
    SessionsOut,
    TokensOut,
    UserOut,
    parse_id,
)
from storage.telemetry import trace_id_var

Caller = Annotated[Principal, Depends(Require(AUTHENTICATED))]
Anyone = Depends(Require(PUBLIC))
Throttled = Depends(Require(PUBLIC, AUTH_GROUP))  # per client address, stricter limits
_NO_STORE = {"Cache-Control": "no-store"}


def _tokens(issued: Any) -> JSONResponse:
    body = TokensOut(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        session_id=issued.session_id,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=_NO_STORE)


async def _login(actor: Any, body: LoginIn, request: Request) -> Response:
    """The client's address goes along: the actor counts failed logins by it."""
    issued = await actor.login.remote(
        body.email,
        body.password,
        request.headers.get("user-agent", ""),
        trace_id_var.get(),
        client=request_client(request),
    )
    if isinstance(issued, MfaChallenge):
        challenge = MfaRequiredOut(mfa_token=issued.mfa_token, expires_in=issued.expires_in)
        return JSONResponse(challenge.model_dump(mode="json"), headers=_NO_STORE)
    return _tokens(issued)


def auth_routes(app: FastAPI, auth_actor: Any) -> None:
    """Add the auth routes; ``auth_actor`` is an async getter of the auth actor's handle."""
    mfa_routes(app, auth_actor)

    @app.post("/auth/register", tags=["auth"], status_code=201, dependencies=[Throttled])
    async def register(body: RegisterIn) -> UserOut:
        actor = await auth_actor()
        user = await actor.register.remote(
            body.email, body.password, body.display_name, trace_id_var.get()
        )
        return UserOut(id=user.id, email=user.email, roles=list(user.roles))

    @app.post(
        "/auth/login",
        tags=["auth"],
        response_model=TokensOut | MfaRequiredOut,
        dependencies=[Throttled],
    )
    async def login(body: LoginIn, request: Request) -> Response:
        return await _login(await auth_actor(), body, request)

    @app.post("/auth/refresh", tags=["auth"], response_model=TokensOut, dependencies=[Throttled])
    async def refresh(body: RefreshIn) -> JSONResponse:
        actor = await auth_actor()
        return _tokens(await actor.refresh.remote(body.refresh_token, trace_id_var.get()))

    @app.post("/auth/logout", tags=["auth"], status_code=204)
    async def logout(caller: Caller) -> Response:
        actor = await auth_actor()
        await actor.revoke_session.remote(
            caller.user_id, caller.session_id, "logout", trace_id_var.get()
        )
        return Response(status_code=204)

    @app.get("/auth/sessions", tags=["auth"])
    async def sessions(caller: Caller) -> SessionsOut:
        actor = await auth_actor()
        records = await actor.sessions.remote(caller.user_id, trace_id_var.get())
        items = [
            SessionOut(
                id=r.id,
                created_at=r.created_at,
                last_used_at=r.last_used_at,
                user_agent=r.user_agent,
                current=r.id == caller.session_id,
            )
            for r in records
        ]
        return SessionsOut(items=items)

    @app.delete("/auth/sessions/{session_id}", tags=["auth"], status_code=204)
    async def revoke(caller: Caller, session_id: Annotated[str, Path(max_length=64)]) -> Response:
        target = parse_id(session_id, SessionNotFoundError)
        actor = await auth_actor()
        await actor.revoke_session.remote(
            caller.user_id, target, "session_revoked", trace_id_var.get()
        )
        return Response(status_code=204)

    @app.get("/auth/me", tags=["auth"])
    async def me(caller: Caller) -> MeOut:
        actor = await auth_actor()
        user = await actor.me.remote(caller.user_id, trace_id_var.get())
        return MeOut(
            id=user.id,
            email=user.email,
            roles=list(user.roles),
            permissions=sorted(caller.permissions),
            mfa_enabled=user.mfa_enabled,
        )

    @app.get("/.well-known/jwks.json", tags=["auth"], dependencies=[Anyone])
    async def jwks(request: Request) -> JSONResponse:
        keys = await request.app.state.authenticator.keys.jwks()
        return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=60"})


def mfa_routes(app: FastAPI, auth_actor: Any) -> None:
    """Add the second-factor routes (``/auth/mfa/*``)."""

    @app.post("/auth/mfa/verify", tags=["auth"], response_model=TokensOut, dependencies=[Throttled])
    async def mfa_verify(body: MfaVerifyIn, request: Request) -> JSONResponse:
        actor = await auth_actor()
        issued = await actor.verify_mfa.remote(
            body.mfa_token,
            body.code,
            body.recovery_code,
            request.headers.get("user-agent", ""),
            trace_id_var.get(),
        )
        return _tokens(issued)

    @app.post("/auth/mfa/enroll", tags=["auth"])
    async def mfa_enroll(caller: Caller) -> JSONResponse:
        actor = await auth_actor()
        enrolled = await actor.enroll_mfa.remote(caller.user_id, trace_id_var.get())
        body = MfaEnrollOut(secret=enrolled.secret, otpauth_uri=enrolled.otpauth_uri)
        return JSONResponse(body.model_dump(mode="json"), headers=_NO_STORE)

    @app.post("/auth/mfa/activate", tags=["auth"], response_model=RecoveryCodesOut)
    async def mfa_activate(caller: Caller, body: MfaCodeIn) -> JSONResponse:
        actor = await auth_actor()
        codes = await actor.activate_mfa.remote(caller.user_id, body.code, trace_id_var.get())
        out = RecoveryCodesOut(recovery_codes=list(codes))
        return JSONResponse(out.model_dump(mode="json"), headers=_NO_STORE)

    @app.delete("/auth/mfa", tags=["auth"], status_code=204)
    async def mfa_disable(caller: Caller, body: MfaDisableIn) -> Response:
        actor = await auth_actor()
        await actor.disable_mfa.remote(
            caller.user_id, body.code, body.recovery_code, trace_id_var.get()
        )
        return Response(status_code=204)
