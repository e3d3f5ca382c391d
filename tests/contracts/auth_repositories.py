"""The contracts of the auth ports: run against the fakes and PostgreSQL.

Every test makes its own ids, emails and kids, and the signing-key and audit tests keep
their timestamps in the distant past, so they neither see nor disturb other rows of a shared
database (a running gateway never publishes a key left behind here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from storage.errors import ConflictError
from storage.ports import UnitOfWorkFactory
from storage.records import AuditRecord, MfaState, SessionRecord, SigningKeyRecord, UserRecord

T0 = datetime(2001, 1, 1, tzinfo=UTC)
GRACE = timedelta(hours=1)


def user(email: str | None = None, roles: tuple[str, ...] = ("customer",)) -> UserRecord:
    user_id = uuid.uuid4()
    email = email or f"{user_id.hex}@example.com"
    return UserRecord(user_id, email, "$argon2id$fake", None, roles, False, T0)


def session(user_id: uuid.UUID, created_at: datetime = T0) -> SessionRecord:
    return SessionRecord(uuid.uuid4(), user_id, created_at, created_at, "pytest/1", None)


def token_hash() -> bytes:
    return hashlib.sha256(uuid.uuid4().bytes).digest()


def signing_key(created_at: datetime, retired_at: datetime | None = None) -> SigningKeyRecord:
    kid = f"k-{uuid.uuid4().hex}"
    return SigningKeyRecord(
        kid, b"private " + kid.encode(), f'{{"kid": "{kid}"}}', created_at, retired_at
    )


def event(at: datetime, kind: str = "login") -> AuditRecord:
    return AuditRecord(uuid.uuid4(), at, kind, uuid.uuid4(), None, "trace-1", '{"ip": "::1"}')


async def add_user(uow: UnitOfWorkFactory) -> UserRecord:
    async with uow() as tx:
        added = await tx.users.add(user())
        await tx.commit()
    return added


async def add_sessions(
    uow: UnitOfWorkFactory, user_id: uuid.UUID, count: int
) -> list[SessionRecord]:
    """``count`` sessions of the user, one minute apart, oldest first."""
    async with uow() as tx:
        added = [
            await tx.sessions.add(session(user_id, T0 + timedelta(minutes=i))) for i in range(count)
        ]
        await tx.commit()
    return added


class UserRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    async def test_added_user_is_read_back_by_id_and_by_email(self, uow: UnitOfWorkFactory) -> None:
        new = UserRecord(
            uuid.uuid4(),
            f"{uuid.uuid4().hex}@example.com",
            "h",
            "Ann",
            ("customer", "finance"),
            False,
            T0,
        )
        async with uow() as tx:
            added = await tx.users.add(new)
            await tx.commit()
        async with uow() as tx:
            by_id = await tx.users.get(new.id)
            by_email = await tx.users.by_email(new.email)
        assert by_id == by_email == added
        assert (added.id, added.email, added.display_name) == (new.id, new.email, "Ann")
        assert added.roles == ("customer", "finance")
        assert added.disabled is False
        assert added.created_at.year >= 2024  # set by the storage, not taken from the record

    async def test_email_is_matched_exactly_as_stored(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        async with uow() as tx:
            assert await tx.users.by_email(added.email.upper()) is None
            assert await tx.users.by_email("nobody-" + added.email) is None

    async def test_duplicate_email_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.users.add(user(email=added.email))
                await tx.commit()

    async def test_duplicate_id_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.users.add(dataclasses.replace(user(), id=added.id))
                await tx.commit()

    async def test_uncommitted_user_is_rolled_back(self, uow: UnitOfWorkFactory) -> None:
        new = user()
        async with uow() as tx:
            await tx.users.add(new)
        async with uow() as tx:
            assert await tx.users.get(new.id) is None
            assert await tx.users.by_email(new.email) is None

    async def test_set_roles_replaces_the_roles(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        async with uow() as tx:
            changed = await tx.users.set_roles(added.id, ("admin", "operator"))
            await tx.commit()
        async with uow() as tx:
            got = await tx.users.get(added.id)
            emptied = await tx.users.set_roles(added.id, ())
        assert changed is not None and got is not None and emptied is not None
        assert changed.roles == got.roles == ("admin", "operator")
        assert (got.email, got.created_at) == (added.email, added.created_at)
        assert emptied.roles == ()

    async def test_set_disabled_disables_and_enables(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        async with uow() as tx:
            disabled = await tx.users.set_disabled(added.id, True)
            await tx.commit()
        async with uow() as tx:
            got = await tx.users.get(added.id)
            enabled = await tx.users.set_disabled(added.id, False)
        assert disabled is not None and got is not None and enabled is not None
        assert disabled.disabled and got.disabled
        assert not enabled.disabled

    async def test_unknown_user_reads_and_changes_as_none(self, uow: UnitOfWorkFactory) -> None:
        missing = uuid.uuid4()
        async with uow() as tx:
            assert await tx.users.get(missing) is None
            assert await tx.users.set_roles(missing, ("admin",)) is None
            assert await tx.users.set_disabled(missing, True) is None
            assert await tx.users.mfa_state(missing) is None
            assert not await tx.users.set_pending_mfa(missing, b"sealed")
            assert not await tx.users.activate_mfa(missing, b"sealed", 1)
            assert not await tx.users.use_totp_step(missing, 1)
            assert not await tx.users.disable_mfa(missing)
            assert not await tx.users.use_recovery_code(missing, b"h" * 32, T0)

    async def _mfa_on(self, uow: UnitOfWorkFactory, step: int = 100) -> UserRecord:
        added = await add_user(uow)
        async with uow() as tx:
            assert await tx.users.set_pending_mfa(added.id, b"sealed-1")
            assert await tx.users.activate_mfa(added.id, b"sealed-1", step)
            await tx.commit()
        return added

    async def test_new_user_has_mfa_off(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        async with uow() as tx:
            state = await tx.users.mfa_state(added.id)
        assert not added.mfa_enabled
        assert state == MfaState(False, None, None, None)

    async def test_activation_needs_the_pending_secret_and_happens_once(
        self, uow: UnitOfWorkFactory
    ) -> None:
        added = await add_user(uow)
        async with uow() as tx:
            assert not await tx.users.activate_mfa(added.id, b"sealed-1", 7)
            assert await tx.users.set_pending_mfa(added.id, b"sealed-1")
            assert not await tx.users.activate_mfa(added.id, b"other", 7)
            assert await tx.users.activate_mfa(added.id, b"sealed-1", 7)
            assert not await tx.users.activate_mfa(added.id, b"sealed-1", 8)
            await tx.commit()
        async with uow() as tx:
            state = await tx.users.mfa_state(added.id)
            got = await tx.users.get(added.id)
        assert state == MfaState(True, b"sealed-1", None, 7)
        assert got is not None and got.mfa_enabled

    async def test_uncommitted_activation_is_rolled_back(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        async with uow() as tx:
            await tx.users.set_pending_mfa(added.id, b"sealed-1")
            await tx.users.activate_mfa(added.id, b"sealed-1", 7)
        async with uow() as tx:
            state = await tx.users.mfa_state(added.id)
        assert state == MfaState(False, None, None, None)

    async def test_a_totp_step_is_accepted_once_and_only_later_ones_after(
        self, uow: UnitOfWorkFactory
    ) -> None:
        added = await self._mfa_on(uow, step=100)
        async with uow() as tx:
            assert not await tx.users.use_totp_step(added.id, 100)  # the activation's
            assert not await tx.users.use_totp_step(added.id, 99)
            assert await tx.users.use_totp_step(added.id, 101)
            assert not await tx.users.use_totp_step(added.id, 101)
            await tx.commit()
        async with uow() as tx:
            state = await tx.users.mfa_state(added.id)
            assert await tx.users.use_totp_step(added.id, 102)
        assert state is not None and state.last_step == 101

    async def test_no_totp_step_is_accepted_while_mfa_is_off(self, uow: UnitOfWorkFactory) -> None:
        added = await add_user(uow)
        async with uow() as tx:
            assert not await tx.users.use_totp_step(added.id, 1)

    async def test_recovery_codes_work_once_and_are_replaced(self, uow: UnitOfWorkFactory) -> None:
        added, other = await self._mfa_on(uow), await add_user(uow)
        first, second, third = token_hash(), token_hash(), token_hash()
        async with uow() as tx:
            await tx.users.replace_recovery_codes(added.id, [first, second])
            await tx.commit()
        async with uow() as tx:
            assert not await tx.users.use_recovery_code(other.id, first, T0)
            assert await tx.users.use_recovery_code(added.id, first, T0)
            assert not await tx.users.use_recovery_code(added.id, first, T0)
            assert not await tx.users.use_recovery_code(added.id, third, T0)
            await tx.commit()
        async with uow() as tx:
            await tx.users.replace_recovery_codes(added.id, [third])
            await tx.commit()
        async with uow() as tx:
            assert not await tx.users.use_recovery_code(added.id, second, T0)
            assert await tx.users.use_recovery_code(added.id, third, T0)

    async def test_disable_mfa_forgets_secrets_steps_and_codes(
        self, uow: UnitOfWorkFactory
    ) -> None:
        added = await self._mfa_on(uow)
        code = token_hash()
        async with uow() as tx:
            await tx.users.replace_recovery_codes(added.id, [code])
            assert await tx.users.disable_mfa(added.id)
            await tx.commit()
        async with uow() as tx:
            state = await tx.users.mfa_state(added.id)
            got = await tx.users.get(added.id)
            assert not await tx.users.use_recovery_code(added.id, code, T0)
        assert state == MfaState(False, None, None, None)
        assert got is not None and not got.mfa_enabled


class SessionRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    async def test_added_session_is_read_back(self, uow: UnitOfWorkFactory) -> None:
        owner = await add_user(uow)
        (added,) = await add_sessions(uow, owner.id, 1)
        async with uow() as tx:
            got = await tx.sessions.get(added.id)
        assert got == added == dataclasses.replace(added, user_agent="pytest/1", revoked_at=None)
        assert got.created_at == got.last_used_at == T0

    async def test_session_of_an_unknown_user_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.sessions.add(session(uuid.uuid4()))
                await tx.commit()

    async def test_unknown_session_reads_none(self, uow: UnitOfWorkFactory) -> None:
        async with uow() as tx:
            assert await tx.sessions.get(uuid.uuid4()) is None

    async def test_active_for_user_excludes_revoked_and_lists_newest_first(
        self, uow: UnitOfWorkFactory
    ) -> None:
        owner, other = await add_user(uow), await add_user(uow)
        first, second, third = await add_sessions(uow, owner.id, 3)
        await add_sessions(uow, other.id, 1)
        async with uow() as tx:
            assert await tx.sessions.revoke(second.id, T0 + timedelta(hours=1))
            await tx.commit()
        async with uow() as tx:
            active = await tx.sessions.active_for_user(owner.id)
        assert [s.id for s in active] == [third.id, first.id]

    async def test_touch_sets_last_used_at(self, uow: UnitOfWorkFactory) -> None:
        owner = await add_user(uow)
        (added,) = await add_sessions(uow, owner.id, 1)
        later = T0 + timedelta(minutes=7)
        async with uow() as tx:
            await tx.sessions.touch(added.id, later)
            await tx.sessions.touch(uuid.uuid4(), later)  # an unknown id is ignored
            await tx.commit()
        async with uow() as tx:
            got = await tx.sessions.get(added.id)
        assert got is not None
        assert (got.created_at, got.last_used_at) == (T0, later)

    async def test_revoke_is_once_only(self, uow: UnitOfWorkFactory) -> None:
        owner = await add_user(uow)
        (added,) = await add_sessions(uow, owner.id, 1)
        at = T0 + timedelta(hours=1)
        async with uow() as tx:
            assert await tx.sessions.revoke(added.id, at) is True
            await tx.commit()
        async with uow() as tx:
            assert await tx.sessions.revoke(added.id, at + timedelta(hours=1)) is False
            assert await tx.sessions.revoke(uuid.uuid4(), at) is False
            await tx.commit()
        async with uow() as tx:
            got = await tx.sessions.get(added.id)
        assert got is not None and got.revoked_at == at

    async def test_revoke_all_for_user_returns_only_the_ones_it_revoked(
        self, uow: UnitOfWorkFactory
    ) -> None:
        owner, other = await add_user(uow), await add_user(uow)
        earlier, second, third = await add_sessions(uow, owner.id, 3)
        (bystander,) = await add_sessions(uow, other.id, 1)
        at = T0 + timedelta(hours=1)
        async with uow() as tx:
            await tx.sessions.revoke(earlier.id, T0)
            revoked = await tx.sessions.revoke_all_for_user(owner.id, at)
            await tx.commit()
        async with uow() as tx:
            again = await tx.sessions.revoke_all_for_user(owner.id, at)
            assert await tx.sessions.active_for_user(owner.id) == []
            assert [s.id for s in await tx.sessions.active_for_user(other.id)] == [bystander.id]
            first = await tx.sessions.get(earlier.id)
            last = await tx.sessions.get(third.id)
        assert sorted(revoked) == sorted([second.id, third.id])
        assert again == []
        assert first is not None and first.revoked_at == T0
        assert last is not None and last.revoked_at == at


class RefreshTokenRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    async def _session(self, uow: UnitOfWorkFactory) -> SessionRecord:
        owner = await add_user(uow)
        (added,) = await add_sessions(uow, owner.id, 1)
        return added

    async def test_spend_is_once_only_and_session_of_still_answers(
        self, uow: UnitOfWorkFactory
    ) -> None:
        owner, digest = await self._session(uow), token_hash()
        async with uow() as tx:
            await tx.refresh_tokens.add(digest, owner.id)
            await tx.commit()
        async with uow() as tx:
            assert await tx.refresh_tokens.spend(digest, T0) == owner.id
            assert await tx.refresh_tokens.spend(digest, T0) is None
            await tx.commit()
        async with uow() as tx:
            assert await tx.refresh_tokens.spend(digest, T0) is None
            assert await tx.refresh_tokens.session_of(digest) == owner.id

    async def test_uncommitted_spend_is_rolled_back(self, uow: UnitOfWorkFactory) -> None:
        owner, digest = await self._session(uow), token_hash()
        async with uow() as tx:
            await tx.refresh_tokens.add(digest, owner.id)
            await tx.commit()
        async with uow() as tx:
            assert await tx.refresh_tokens.spend(digest, T0) == owner.id
        async with uow() as tx:
            assert await tx.refresh_tokens.spend(digest, T0) == owner.id

    async def test_unknown_token_is_neither_spent_nor_known(self, uow: UnitOfWorkFactory) -> None:
        async with uow() as tx:
            assert await tx.refresh_tokens.spend(token_hash(), T0) is None
            assert await tx.refresh_tokens.session_of(token_hash()) is None

    async def test_duplicate_token_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        owner, digest = await self._session(uow), token_hash()
        async with uow() as tx:
            await tx.refresh_tokens.add(digest, owner.id)
            await tx.commit()
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.refresh_tokens.add(digest, owner.id)
                await tx.commit()

    async def test_token_of_an_unknown_session_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.refresh_tokens.add(token_hash(), uuid.uuid4())
                await tx.commit()


class SigningKeyRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory.

    Each test retires the keys it leaves active, long ago, so they are never published for
    the real present.
    """

    async def _published(
        self, uow: UnitOfWorkFactory, now: datetime, mine: list[SigningKeyRecord]
    ) -> list[SigningKeyRecord]:
        kids = {k.kid for k in mine}
        async with uow() as tx:
            return [k for k in await tx.signing_keys.published(now, GRACE) if k.kid in kids]

    async def _retire(self, uow: UnitOfWorkFactory, keys: list[SigningKeyRecord]) -> None:
        async with uow() as tx:
            for key in keys:
                await tx.signing_keys.retire(key.kid, T0)
            await tx.commit()

    async def test_published_includes_keys_retired_within_grace_newest_first(
        self, uow: UnitOfWorkFactory
    ) -> None:
        now = T0 + timedelta(days=1)
        keys = [
            signing_key(T0, retired_at=now - 2 * GRACE),
            signing_key(T0 + timedelta(hours=1), retired_at=now - GRACE),
            signing_key(T0 + timedelta(hours=2), retired_at=now - GRACE / 2),
            signing_key(T0 + timedelta(hours=3)),
        ]
        async with uow() as tx:
            added = [await tx.signing_keys.add(k) for k in keys]
            await tx.commit()
        published = await self._published(uow, now, keys)
        await self._retire(uow, keys)
        assert added == keys
        assert published == [keys[3], keys[2]]

    async def test_retire_only_retires_a_key_once(self, uow: UnitOfWorkFactory) -> None:
        key = signing_key(T0)
        retired_at = T0 + timedelta(hours=1)
        async with uow() as tx:
            await tx.signing_keys.add(key)
            await tx.signing_keys.retire(key.kid, retired_at)
            await tx.signing_keys.retire(f"k-{uuid.uuid4().hex}", retired_at)  # ignored
            await tx.commit()
        async with uow() as tx:
            await tx.signing_keys.retire(key.kid, retired_at + timedelta(hours=2))
            await tx.commit()
        # Still published only while within grace of the first retirement.
        assert await self._published(uow, retired_at + GRACE / 2, [key]) == [
            dataclasses.replace(key, retired_at=retired_at)
        ]
        assert await self._published(uow, retired_at + GRACE * 2, [key]) == []

    async def test_duplicate_kid_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        key = signing_key(T0, retired_at=T0)
        async with uow() as tx:
            await tx.signing_keys.add(key)
            await tx.commit()
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.signing_keys.add(key)
                await tx.commit()


class AuditLogContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    @pytest.fixture
    def base(self) -> datetime:
        """A moment in the past no other test writes near (a window of ~3 years)."""
        return T0 + timedelta(seconds=uuid.uuid4().int % 10**8)

    async def test_added_event_is_read_back_exactly(
        self, uow: UnitOfWorkFactory, base: datetime
    ) -> None:
        record = AuditRecord(
            uuid.uuid4(),
            base,
            "role_changed",
            uuid.uuid4(),
            uuid.uuid4(),
            "t" * 32,
            '{"roles":  ["admin"], "before": []}',
        )
        async with uow() as tx:
            await tx.audit.add(record)
            await tx.commit()
        async with uow() as tx:
            (got,) = await tx.audit.list_before(base + timedelta(microseconds=1), 1)
        assert got == record

    async def test_duplicate_event_id_is_a_conflict(
        self, uow: UnitOfWorkFactory, base: datetime
    ) -> None:
        record = event(base)
        async with uow() as tx:
            await tx.audit.add(record)
            await tx.commit()
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.audit.add(record)
                await tx.commit()

    async def test_list_is_newest_first_and_pages_strictly_before(
        self, uow: UnitOfWorkFactory, base: datetime
    ) -> None:
        events = [event(base + timedelta(seconds=i)) for i in range(1, 6)]
        async with uow() as tx:
            for record in reversed(events):
                await tx.audit.add(record)
            await tx.commit()
        mine = {e.id for e in events}
        async with uow() as tx:
            first = await tx.audit.list_before(base + timedelta(seconds=6), 3)
            second = await tx.audit.list_before(first[-1].at, 3)
        assert first == [events[4], events[3], events[2]]
        assert [e for e in second if e.id in mine] == [events[1], events[0]]
        assert second[:2] == [events[1], events[0]]

    async def test_list_without_before_starts_at_the_newest(self, uow: UnitOfWorkFactory) -> None:
        now = datetime.now(UTC)
        older, newer = event(now - timedelta(seconds=1)), event(now)
        async with uow() as tx:
            await tx.audit.add(newer)
            await tx.audit.add(older)
            await tx.commit()
        async with uow() as tx:
            listed = await tx.audit.list_before(None, 50)
        assert [e.id for e in listed if e.id in {older.id, newer.id}] == [newer.id, older.id]
        assert [e.at for e in listed] == sorted((e.at for e in listed), reverse=True)
        assert len(listed) <= 50

    async def test_list_page_orders_same_instant_events_by_id_without_gaps(
        self, uow: UnitOfWorkFactory, base: datetime
    ) -> None:
        at = base + timedelta(seconds=1)
        same = [event(at) for _ in range(4)]
        older, newer = event(base), event(at + timedelta(seconds=1))
        async with uow() as tx:
            for record in [*same, older, newer]:
                await tx.audit.add(record)
            await tx.commit()
        expected = [newer.id, *sorted((e.id for e in same), reverse=True), older.id]
        pages: list[list[AuditRecord]] = []
        after = (newer.at + timedelta(microseconds=1), newer.id)
        async with uow() as tx:
            while len(pages) < 5 and (page := await tx.audit.list_page(after, 2)):
                pages.append(page)
                after = (page[-1].at, page[-1].id)
        listed = [e.id for page in pages for e in page]
        assert listed[: len(expected)] == expected
        assert len(set(listed)) == len(listed)

    async def test_list_page_without_after_starts_at_the_newest(
        self, uow: UnitOfWorkFactory
    ) -> None:
        now = datetime.now(UTC)
        older, newer = event(now - timedelta(seconds=1)), event(now)
        async with uow() as tx:
            await tx.audit.add(older)
            await tx.audit.add(newer)
            await tx.commit()
        async with uow() as tx:
            listed = await tx.audit.list_page(None, 100)
        assert [e.id for e in listed if e.id in {older.id, newer.id}] == [newer.id, older.id]
        assert [(e.at, e.id) for e in listed] == sorted(
            ((e.at, e.id) for e in listed), reverse=True
        )
