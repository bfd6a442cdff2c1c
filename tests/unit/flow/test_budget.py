"""The budget: reserve the worst case, settle with the actual, refuse what could cross the cap, at any concurrency."""

from __future__ import annotations

import random

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchcap.errors import BudgetReached, ConfigError
from batchcap.flow.budget import Budget, BudgetGate, BudgetSettings, TokenPrice, parse_token_price


def test_token_price_parses_in_out_per_million_tokens() -> None:
    price = parse_token_price("0.2,0.8")
    assert price == TokenPrice(0.2, 0.8)
    assert price.cost(1_000_000, 0) == pytest.approx(0.2)
    assert price.cost(812, 17) == pytest.approx((812 * 0.2 + 17 * 0.8) / 1e6)
    assert parse_token_price(" $1.5 , $2 ") == TokenPrice(1.5, 2.0)


@pytest.mark.parametrize("text", ["0.2", "a,b", "0.2,0.8,1", "-1,2", "inf,1", ""])
def test_a_bad_token_price_names_the_flag_and_the_form(text: str) -> None:
    with pytest.raises(ConfigError, match="--token-price"):
        parse_token_price(text)


@pytest.mark.parametrize(("kw", "flag"), [({"max_cost": 0}, "--max-cost"), ({"max_cost": -1.0}, "--max-cost"),
                                          ({"max_cost": float("nan")}, "--max-cost"), ({"max_images": 0}, "--max-images"),
                                          ({"max_images": 2.5}, "--max-images")])
def test_budget_settings_check_their_flags(kw: dict[str, float], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        BudgetSettings(**kw)  # type: ignore[arg-type]


def test_settings_without_a_cap_reserve_nothing() -> None:
    assert not BudgetSettings(token_price=TokenPrice(1, 1)).capped
    assert BudgetSettings(max_cost=5).capped
    assert BudgetSettings(max_images=10).capped


def test_reserve_settle_and_refuse_at_the_cap() -> None:
    b = Budget(max_cost=1.0)
    assert b.reserve(0.4) == "go"
    assert b.reserve(0.4) == "go"
    assert b.reserve(0.4) == "wait"  # 1.2 reserved: the two in flight may cost less than they reserved
    b.settle(0.4, 0.1)
    assert b.reserve(0.4) == "go"  # 0.1 spent + 0.8 reserved
    b.settle(0.4, 0.35)
    b.settle(0.4, 0.4)
    assert b.spent == pytest.approx(0.85)
    assert b.reserve(0.2) == "refuse"  # 0.85 + 0.2 can never fit: settled spend only grows
    assert b.closed
    assert b.refused_for == "cost"
    assert b.reserve(0.0) == "refuse"  # closed: nothing starts any more


def test_earlier_spend_counts_against_the_cap() -> None:
    b = Budget(max_cost=5.0, spent=4.97, images=1830)
    assert b.reserve(0.05) == "refuse"
    assert b.spent_images == 1830


def test_an_attempt_of_unknown_size_goes_alone() -> None:
    b = Budget(max_cost=10.0)
    assert b.reserve(0.1, alone=True) == "go"
    assert b.reserve(0.1) == "wait"  # nothing beside it
    b.settle(0.1, 0.2)
    assert b.reserve(0.1) == "go"
    assert b.reserve(0.1, alone=True) == "wait"  # alone means nothing else in flight
    b.settle(0.1, 0.1)
    assert b.reserve(0.1, alone=True) == "go"


def test_images_are_capped_by_count_and_retryable_ones_free_their_place() -> None:
    b = Budget(max_images=3, images=1)  # one done by an earlier run
    assert b.reserve(0.0, 1) == "go"
    assert b.reserve(0.0, 1) == "go"
    assert b.reserve(0.0, 1) == "wait"
    assert b.reserve(0.0, 0) == "go"  # a retry of an image in flight is no new image
    b.settle(0.0, 0.0)
    b.settle(0.0, 0.0)
    b.settle_images(1, 0)  # ended with a retryable error: tried again later, not done
    assert b.reserve(0.0, 1) == "go"
    b.settle(0.0, 0.0)
    b.settle_images(1, 1)
    b.settle_images(1, 1)
    assert b.spent_images == 3
    assert b.reserve(0.0, 1) == "refuse"
    assert b.refused_for == "images"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 1.0)), min_size=1, max_size=200),
       st.floats(0.1, 20.0), st.integers(0, 2**32 - 1))
def test_spend_never_passes_the_cap_however_attempts_interleave(
    attempts: list[tuple[float, float]], cap: float, seed: int
) -> None:
    """Attempts reserve their worst case and settle at most that, in a random interleaving: spend <= cap."""
    rng = random.Random(seed)
    b = Budget(max_cost=cap)
    in_flight: list[tuple[float, float]] = []
    queue = list(attempts)
    while queue or in_flight:
        if queue and (not in_flight or rng.random() < 0.5):
            worst, share = queue[0]
            verdict = b.reserve(worst)
            if verdict == "go":
                in_flight.append((worst, worst * share))
                queue.pop(0)
                continue
            if verdict == "refuse":
                queue.clear()
                continue
        if in_flight:
            worst, actual = in_flight.pop(rng.randrange(len(in_flight)))
            b.settle(worst, actual)
        assert b.spent <= cap + 1e-9
    assert b.reserved == 0.0


async def test_the_gate_holds_the_cap_with_many_senders_and_stops_them_all() -> None:
    """64 senders against one gate: each attempt's cost is known only after it; the cap holds, every sender
    stops with BudgetReached, and the spend ends within one worst case of the cap."""
    gate = BudgetGate(Budget(max_cost=3.0))
    rng = random.Random(7)
    worst = 0.05
    stopped = 0

    async def sender() -> None:
        nonlocal stopped
        while True:
            try:
                reserved = await gate.reserve(lambda: (worst, False))
            except BudgetReached:
                stopped += 1
                return
            for _ in range(rng.randrange(4)):
                await anyio.lowlevel.checkpoint()  # answers come back in any order
            gate.settle(reserved, rng.uniform(0.2, 1.0) * worst)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(64):
                tg.start_soon(sender)
    assert stopped == 64
    assert 3.0 - worst <= gate.budget.spent <= 3.0


async def test_a_waiting_reservation_asks_the_meter_again() -> None:
    """The first attempt goes alone; the waiters are priced again once it has taught the meter its size."""
    gate = BudgetGate(Budget(max_cost=100.0))
    known = False
    first = await gate.reserve(lambda: (1.0, not known))
    started: list[float] = []

    async def waiter() -> None:
        started.append(await gate.reserve(lambda: (2.0, not known)))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert started == []  # nothing beside the alone one
        known = True
        gate.settle(first, 0.5)
    assert started == [2.0, 2.0, 2.0]
