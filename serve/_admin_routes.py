"""``/admin/*`` user management: adapters that validate, call the auth actor, shape answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Response

from actors.auth.errors import UnknownUserError
from serve._auth import Principal, Require
from serve.schemas import (
    AuditEventOut,
    AuditPage,
    Cursor,
    Limit,
    RolesIn,
    UserRolesOut,
    decode_audit_cursor,
    keyset_page,
    parse_id,
)
from storage.telemetry import trace_id_var

Admin = Annotated[Principal, Depends(Require("users:manage"))]
UserIdPath = Annotated[str, Path(max_length=64, description="the user's id")]


def admin_routes(app: FastAPI, auth_actor: Any) -> None:
    """Add the user-management routes; ``auth_actor`` is an async getter of its handle."""

    @app.post("/admin/users/{user_id}/roles", tags=["admin"])
    async def set_roles(admin: Admin, user_id: UserIdPath, body: RolesIn) -> UserRolesOut:
        target = parse_id(user_id, UnknownUserError)
        actor = await auth_actor()
        user = await actor.set_roles.remote(
            admin.user_id, target, list(body.roles), trace_id_var.get()
        )
        return UserRolesOut(id=user.id, roles=list(user.roles))

    @app.post("/admin/users/{user_id}/disable", tags=["admin"], status_code=204)
    async def disable(admin: Admin, user_id: UserIdPath) -> Response:
        target = parse_id(user_id, UnknownUserError)
        actor = await auth_actor()
        await actor.disable_user.remote(admin.user_id, target, trace_id_var.get())
        return Response(status_code=204)

    @app.delete("/admin/users/{user_id}/mfa", tags=["admin"], status_code=204)
    async def reset_mfa(admin: Admin, user_id: UserIdPath) -> Response:
        target = parse_id(user_id, UnknownUserError)
        actor = await auth_actor()
        await actor.reset_mfa.remote(admin.user_id, target, trace_id_var.get())
        return Response(status_code=204)

    @app.get("/admin/audit", tags=["admin"])
    async def audit(_: Admin, limit: Limit = 20, cursor: Cursor = None) -> AuditPage:
        after = decode_audit_cursor(cursor)
        actor = await auth_actor()
        records = await actor.audit_events.remote(after, limit + 1, trace_id_var.get())
        page, next_cursor = keyset_page(records, limit, lambda r: (r.at, r.id))
        return AuditPage(items=[AuditEventOut.of(r) for r in page], next_cursor=next_cursor)
