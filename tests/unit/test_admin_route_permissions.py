"""The user-management routes need ``users:manage``."""

from __future__ import annotations

from fastapi.routing import APIRoute

from serve._auth import declared_permission
from tests.unit.app_factory import offline_app


def test_admin_routes_require_users_manage() -> None:
    declared = {
        (r.path, m): declared_permission(r)
        for r in offline_app().routes
        if isinstance(r, APIRoute)
        for m in r.methods
    }
    assert declared[("/admin/users/{user_id}/roles", "POST")] == "users:manage"
    assert declared[("/admin/users/{user_id}/disable", "POST")] == "users:manage"
    assert declared[("/admin/audit", "GET")] == "users:manage"
