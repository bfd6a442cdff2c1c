"""Pricing one target's attempts (tokens or busy time), and the run's spend; the budget's closing line."""

from __future__ import annotations

import pytest

from batchcap.flow.budget import Budget, TokenPrice
from batchcap.models import Record, Usage
from batchcap.run.guard import budget_stop
from batchcap.run.spend import PROMPT_MARGIN, Bill, Meter, SpendTally, money
from batchcap.service.client import Reply
from batchcap.service.pricing import PriceList


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reply(prompt: int, completion: int, provider: str | None = None, latency: float = 0.5) -> Reply:
    return Reply("a caption", latency, 1000, "r", 200, "stop", Usage(prompt, completion), provider)


ROUTER = PriceList(source="router", by_provider={"novita": TokenPrice(0.2, 0.8), "together": TokenPrice(0.3, 1.2)},
                   unpriced=("fireworks-ai",))


def test_a_chat_answer_costs_its_usage_at_its_providers_price() -> None:
    meter = Meter("t", prices=ROUTER, max_tokens=64)
    bill = Bill()
    assert meter.charge(bill, reply(800, 20, "novita")) == pytest.approx((800 * 0.2 + 20 * 0.8) / 1e6)
    assert meter.charge(bill, reply(800, 10, "together")) == pytest.approx((800 * 0.3 + 10 * 1.2) / 1e6)
    assert bill.usage == Usage(1600, 30)  # a quality retry is paid too: summed
    assert bill.provider == "together"
    assert bill.cost_usd == pytest.approx((800 * 0.2 + 20 * 0.8 + 800 * 0.3 + 10 * 1.2) / 1e6)


def test_an_unpriced_provider_is_said_once_and_leaves_no_cost() -> None:
    meter = Meter("t", prices=ROUTER)
    for _ in range(3):
        bill = Bill()
        assert meter.charge(bill, reply(800, 20, "fireworks-ai")) == 0.0
        assert bill.unpriced
        assert bill.cost_usd is None
        assert bill.usage == Usage(800, 20)
    assert len(meter.notes) == 1
    assert "fireworks-ai" in meter.notes[0]
    assert "--token-price" in meter.notes[0]


def test_the_first_attempt_goes_alone_then_the_largest_prompt_sets_the_reserve() -> None:
    meter = Meter("t", prices=ROUTER, max_tokens=64)
    worst = ROUTER.highest()
    assert worst == TokenPrice(0.3, 1.2)
    cost, alone = meter.reserve()
    assert alone
    assert cost == pytest.approx(worst.cost(0, 64))
    meter.charge(Bill(), reply(800, 20, "novita"))
    meter.charge(Bill(), reply(400, 20, "novita"))
    cost, alone = meter.reserve()
    assert not alone
    assert cost == pytest.approx(worst.cost(int(800 * PROMPT_MARGIN), 64))


def test_a_failed_attempt_of_a_token_target_costs_nothing() -> None:
    meter = Meter("t", prices=ROUTER)
    bill = Bill()
    assert meter.charge(bill) == 0.0
    assert bill.cost_usd is None
    assert bill.usage is None


def test_an_endpoints_busy_span_is_cut_into_its_records() -> None:
    clock = FakeClock()
    meter = Meter("ep", per_hour=3600.0, clock=clock)  # $1 per second
    assert meter.billing == "time"
    assert meter.reserve() == (0.0, True)  # no latency seen yet
    meter.begin()
    clock.now += 0.5
    a = Bill()
    assert meter.charge(a, reply(0, 0, latency=0.5)) == pytest.approx(0.5)
    meter.begin()  # the span started already
    clock.now += 0.25
    b = Bill()
    assert meter.charge(b) == pytest.approx(0.25)  # a failure costs its time too
    clock.now += 0.25
    cost, alone = meter.reserve()
    assert not alone
    assert cost == pytest.approx(0.25 + 1.5 * 0.5)
    assert a.cost_usd == pytest.approx(0.5)
    assert b.cost_usd == pytest.approx(0.25)


def test_a_target_with_no_price_records_usage_only() -> None:
    meter = Meter("t", prices=None)
    assert meter.billing == "unknown"
    bill = Bill()
    assert meter.charge(bill, reply(10, 2, "p")) == 0.0
    assert bill.usage == Usage(10, 2)
    assert bill.cost_usd is None
    assert bill.provider == "p"
    assert meter.reserve() == (0.0, False)


def test_the_tally_sums_by_task_target_and_provider() -> None:
    tally = SpendTally(earlier_usd=1.5, earlier_images=10)
    for provider, cost in (("novita", 0.002), ("novita", 0.004), ("together", 0.003)):
        tally.add(Record("p", "ok", caption="c", target="t1", usage=Usage(100, 10), provider=provider,
                         cost_usd=cost))
    tally.add(Record("q", "ok", caption="c", target="t2", usage=Usage(5, 1)))  # usage, no price
    assert tally.usd == pytest.approx(0.009)
    assert tally.job_usd == pytest.approx(1.509)
    doc = tally.to_dict()
    assert doc["run"]["images"] == 3
    assert doc["run"]["prompt_tokens"] == 305
    assert doc["run"]["per_1000_images_usd"] == pytest.approx(3.0)
    assert doc["by_task"]["caption"]["usd"] == pytest.approx(0.009)
    assert doc["by_provider"]["novita"]["images"] == 2
    assert doc["by_target"]["t2"] == {"usd": 0.0, "images": 0, "prompt_tokens": 5, "completion_tokens": 1,
                                      "per_1000_images_usd": None}


@pytest.mark.parametrize(("dollars", "text"), [(4.97, "$4.97"), (5, "$5.00"), (1234.5, "$1,234.50"),
                                               (0.0123, "$0.0123"), (0.0, "$0.00")])
def test_money(dollars: float, text: str) -> None:
    assert money(dollars) == text


def test_the_budget_line_is_the_issues_line() -> None:
    budget = Budget(max_cost=5.0, spent=4.97, images=1830)
    budget.reserve(0.05)
    stop = budget_stop(budget)
    assert stop.kind == "budget"
    assert stop.message == ("budget reached: spent $4.97 of $5.00 (1,830 images); run again with a higher "
                            "--max-cost to continue")
    images = Budget(max_images=500, spent=1.23, images=500)
    images.reserve(0.0, 1)
    assert budget_stop(images).message == ("image limit reached: 500 images of --max-images 500 done (spent $1.23); "
                                           "run again with a higher --max-images to continue")
