"""Payments' pure rules: amounts, movements, and the two ledger entries of each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from actors._ops import MAX_AMOUNT, Operation
from actors.payments.errors import BalanceLimitError, InsufficientFundsError, InvalidAmountError
from actors.payments.model import (
    COUNTER_ACCOUNT,
    MAX_BALANCE,
    MAX_REFERENCE,
    WALLET_ACCOUNT,
    MoneyCommand,
    check_amount,
    entries,
    move,
    wallet_view,
)
from storage.records import WalletRecord

NOW = datetime(2030, 1, 2, tzinfo=UTC)
EARLIER = datetime(2029, 1, 1, tzinfo=UTC)
OWNER = uuid.UUID(int=7)
OP = Operation.of("k", {})


def wallet(balance: int) -> WalletRecord:
    return WalletRecord(OWNER, balance, 3, EARLIER)


def command(kind: str, amount: int, reference: str = "order-1") -> MoneyCommand:
    return MoneyCommand(OP, OWNER, kind, amount, reference)


@pytest.mark.parametrize("amount", [True, False, 1.0, 0, -1, MAX_AMOUNT + 1, "5", None])
def test_check_amount_refuses_anything_but_a_whole_amount_in_range(amount: object) -> None:
    with pytest.raises(InvalidAmountError) as info:
        check_amount(amount, "total")  # type: ignore[arg-type]
    assert info.value.field == "total"


@pytest.mark.parametrize("amount", [1, 99, MAX_AMOUNT])
def test_check_amount_keeps_a_whole_amount_in_range(amount: int) -> None:
    assert check_amount(amount) == amount


@pytest.mark.parametrize(
    ("kind", "amount", "reference", "field"),
    [
        ("steal", 1, "r", "kind"),
        ("credit", 0, "r", "amount"),
        ("debit", 2.5, "r", "amount"),
        ("refund", 1, "   ", "reason"),
        ("credit", 1, "r" * (MAX_REFERENCE + 1), "reason"),
    ],
)
def test_a_money_command_is_checked_on_construction(
    kind: str, amount: int, reference: str, field: str
) -> None:
    with pytest.raises(InvalidAmountError) as info:
        command(kind, amount, reference)
    assert info.value.field == field


def test_a_reference_of_the_longest_length_is_accepted() -> None:
    assert command("credit", 1, " " + "r" * MAX_REFERENCE + " ").amount == 1


@pytest.mark.parametrize(("kind", "balance"), [("credit", 130), ("refund", 130), ("debit", 70)])
def test_a_movement_changes_the_balance_and_stamps_the_time(kind: str, balance: int) -> None:
    after = move(wallet(100), command(kind, 30), NOW)
    assert after == WalletRecord(OWNER, balance, 3, NOW)


def test_a_debit_may_empty_the_wallet() -> None:
    assert move(wallet(30), command("debit", 30), NOW).balance == 0


def test_a_debit_larger_than_the_balance_is_refused() -> None:
    with pytest.raises(InsufficientFundsError) as info:
        move(wallet(29), command("debit", 30), NOW)
    assert info.value.detail == {"wallet_id": str(OWNER), "balance": 29, "requested": 30}


@pytest.mark.parametrize("kind", ["credit", "refund"])
def test_money_in_past_the_largest_balance_is_refused(kind: str) -> None:
    assert move(wallet(MAX_BALANCE - 5), command(kind, 5), NOW).balance == MAX_BALANCE
    with pytest.raises(BalanceLimitError) as info:
        move(wallet(MAX_BALANCE - 5), command(kind, 6), NOW)
    assert info.value.limit == MAX_BALANCE


@pytest.mark.parametrize(
    ("kind", "signed", "counter"),
    [
        ("credit", 30, "system:funding"),
        ("debit", -30, "system:revenue"),
        ("refund", 30, "system:revenue"),
    ],
)
def test_a_movement_is_two_entries_that_sum_to_zero(kind: str, signed: int, counter: str) -> None:
    cmd = command(kind, 30, "  order-9 ")
    after = move(wallet(100), cmd, NOW)
    mine, other = entries(after, cmd)
    assert mine.amount + other.amount == 0
    assert (mine.account, mine.wallet_id, mine.amount, mine.balance_after) == (
        WALLET_ACCOUNT,
        OWNER,
        signed,
        after.balance,
    )
    assert (other.account, other.wallet_id, other.balance_after) == (counter, None, None)
    assert mine.movement_id == other.movement_id
    assert mine.id != other.id
    assert {mine.kind, other.kind} == {kind}
    assert {mine.reference, other.reference} == {"order-9"}
    assert mine.seq is None and mine.created_at is None  # the database sets them


def test_every_movement_has_its_own_ids() -> None:
    cmd = command("credit", 1)
    first, second = entries(wallet(1), cmd), entries(wallet(1), cmd)
    assert first[0].movement_id != second[0].movement_id
    assert len({e.id for e in (*first, *second)}) == 4


def test_every_kind_has_a_counter_account() -> None:
    assert set(COUNTER_ACCOUNT) == {"credit", "debit", "refund"}
    assert all(a.startswith("system:") for a in COUNTER_ACCOUNT.values())


def test_the_wallet_view_is_json_ready() -> None:
    assert wallet_view(wallet(42), "EUR") == {
        "user_id": str(OWNER),
        "balance": 42,
        "currency": "EUR",
        "updated_at": EARLIER.isoformat(),
    }
