"""The abuse-protection rules (quotas, refusals, blocks), on an in-memory counter."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence

import pytest

from shop.config import ConfigError, load_settings
from shop.domain.errors import TooManyRequests
from shop.domain.identity.throttle import BlockRule, Quota, Throttle
from shop.entrypoints.http.throttle import TrustedProxies, caller_key, client_address, quota

ANONYMOUS = Quota("anonymous", amount=5, window=60)
SIGN_IN = Quota("sign_in", amount=2, window=60)
USER = Quota("user", amount=3, window=60)
BLOCK = BlockRule(after_refusals=3, seconds=900)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryCounter:
    """Fixed windows that start at a caller's first hit, like the Redis adapter's."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], tuple[int, float]] = {}
        self.hits = 0

    def _live(self, quota: Quota, caller: str) -> tuple[int, float] | None:
        window = self._windows.get((quota.name, caller))
        if window is None or window[1] <= self._clock():
            return None
        return window

    async def hit(self, quota: Quota, caller: str) -> int:
        self.hits += 1
        count, ends = self._live(quota, caller) or (0, self._clock() + quota.window)
        self._windows[(quota.name, caller)] = (count + 1, ends)
        return count + 1

    async def seconds_left(self, quota: Quota, caller: str) -> float:
        window = self._live(quota, caller)
        return 0.0 if window is None else window[1] - self._clock()

    async def hold(self, quotas: Sequence[Quota], caller: str, *, seconds: int) -> None:
        for held in quotas:
            self._windows[(held.name, caller)] = (1 << 40, self._clock() + seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counter(clock: Clock) -> MemoryCounter:
    return MemoryCounter(clock)


@pytest.fixture
def throttle(counter: MemoryCounter, clock: Clock) -> Throttle:
    return Throttle(
        counter, anonymous=ANONYMOUS, sign_in=SIGN_IN, user=USER, block=BLOCK, clock=clock
    )


async def _refusal(coro: object) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as caught:
        await coro  # type: ignore[misc]
    return caught.value


async def test_an_address_gets_its_quota_then_is_refused_until_the_window_ends(
    throttle: Throttle, clock: Clock
) -> None:
    for _ in range(ANONYMOUS.amount):
        await throttle.admit_anonymous("1.2.3.4")
    clock.now += 10
    refused = await _refusal(throttle.admit_anonymous("1.2.3.4"))
    assert refused.retry_after == 50
    await throttle.admit_anonymous("5.6.7.8")  # another address has its own quota
    clock.now += 50
    await throttle.admit_anonymous("1.2.3.4")


async def test_sign_in_has_its_own_stricter_quota(throttle: Throttle) -> None:
    for _ in range(SIGN_IN.amount):
        await throttle.admit_anonymous("1.2.3.4", sign_in=True)
    await _refusal(throttle.admit_anonymous("1.2.3.4", sign_in=True))
    await throttle.admit_anonymous("1.2.3.4")  # browsing is still allowed


async def test_an_address_that_keeps_going_is_blocked_everywhere_for_the_block_time(
    throttle: Throttle, clock: Clock
) -> None:
    for _ in range(SIGN_IN.amount):
        await throttle.admit_anonymous("1.2.3.4", sign_in=True)
    for _ in range(BLOCK.after_refusals - 1):
        refused = await _refusal(throttle.admit_anonymous("1.2.3.4", sign_in=True))
        assert "blocked" not in refused.message
    blocked = await _refusal(throttle.admit_anonymous("1.2.3.4", sign_in=True))
    assert "blocked" in blocked.message
    assert blocked.retry_after == BLOCK.seconds

    clock.now += 100  # the sign-in window is over, the block is not
    elsewhere = await _refusal(throttle.admit_anonymous("1.2.3.4"))
    assert "blocked" in elsewhere.message
    assert elsewhere.retry_after == BLOCK.seconds - 100
    await throttle.admit_anonymous("5.6.7.8")

    clock.now += BLOCK.seconds - 100
    await throttle.admit_anonymous("1.2.3.4", sign_in=True)
    await throttle.admit_anonymous("1.2.3.4")


async def test_a_block_this_process_knows_of_costs_no_counter_hit(
    throttle: Throttle, counter: MemoryCounter
) -> None:
    for _ in range(SIGN_IN.amount + BLOCK.after_refusals):
        with contextlib.suppress(TooManyRequests):
            await throttle.admit_anonymous("1.2.3.4", sign_in=True)
    hits = counter.hits
    for _ in range(100):
        await _refusal(throttle.admit_anonymous("1.2.3.4"))
    assert counter.hits == hits


async def test_a_block_set_by_another_process_is_learnt_from_the_counter(
    counter: MemoryCounter, clock: Clock
) -> None:
    def process() -> Throttle:
        return Throttle(
            counter, anonymous=ANONYMOUS, sign_in=SIGN_IN, user=USER, block=BLOCK, clock=clock
        )

    first, second = process(), process()
    for _ in range(SIGN_IN.amount + BLOCK.after_refusals):
        with contextlib.suppress(TooManyRequests):
            await first.admit_anonymous("1.2.3.4", sign_in=True)
    refused = await _refusal(second.admit_anonymous("1.2.3.4"))
    assert "blocked" in refused.message
    hits = counter.hits
    await _refusal(second.admit_anonymous("1.2.3.4"))
    assert counter.hits == hits, "second process now remembers the block"


class JumpingCounter(MemoryCounter):
    """A batched counter's view: a hit may learn several other hits at once."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.holds = 0
        self.jump = 0

    async def hit(self, quota: Quota, caller: str) -> int:
        count = await super().hit(quota, caller)
        if self.jump:
            count, ends = self._windows[(quota.name, caller)]
            self._windows[(quota.name, caller)] = (count + self.jump, ends)
            count, self.jump = count + self.jump, 0
        return count

    async def hold(self, quotas: Sequence[Quota], caller: str, *, seconds: int) -> None:
        self.holds += 1
        await super().hold(quotas, caller, seconds=seconds)


async def test_a_count_that_jumps_past_the_threshold_still_blocks(clock: Clock) -> None:
    counter = JumpingCounter(clock)
    batched = Throttle(
        MemoryCounter(clock),
        anonymous=ANONYMOUS,
        sign_in=SIGN_IN,
        user=USER,
        block=BLOCK,
        batched=counter,
        clock=clock,
    )
    await batched.admit_anonymous("1.2.3.4")
    counter.jump = ANONYMOUS.amount + BLOCK.after_refusals + 5  # never equal to the threshold
    blocked = await _refusal(batched.admit_anonymous("1.2.3.4"))
    assert "blocked" in blocked.message
    assert blocked.retry_after == BLOCK.seconds
    assert counter.holds == 1


async def test_a_held_count_is_learnt_not_held_again(clock: Clock) -> None:
    counter = JumpingCounter(clock)
    first, second = (
        Throttle(
            counter,
            anonymous=ANONYMOUS,
            sign_in=SIGN_IN,
            user=USER,
            block=BLOCK,
            clock=clock,
        )
        for _ in range(2)
    )
    for _ in range(ANONYMOUS.amount + BLOCK.after_refusals):
        with contextlib.suppress(TooManyRequests):
            await first.admit_anonymous("1.2.3.4")
    assert counter.holds == 1
    clock.now += 100
    learnt = await _refusal(second.admit_anonymous("1.2.3.4"))
    assert learnt.retry_after == BLOCK.seconds - 100, "the block's end is not moved"
    assert counter.holds == 1


async def test_users_are_counted_per_user_and_never_blocked(
    throttle: Throttle, clock: Clock
) -> None:
    for _ in range(USER.amount):
        await throttle.admit_user("ann")
    for _ in range(50):
        refused = await _refusal(throttle.admit_user("ann"))
        assert "blocked" not in refused.message
    await throttle.admit_user("bob")
    clock.now += USER.window
    await throttle.admit_user("ann")


def test_quotas_need_positive_numbers() -> None:
    with pytest.raises(ValueError):
        Quota("x", amount=0, window=60)
    with pytest.raises(ValueError):
        BlockRule(after_refusals=1, seconds=0)


def test_quotas_are_read_in_limits_notation() -> None:
    assert quota("q", "10/minute") == Quota("q", 10, 60)
    assert quota("q", "100 per 5 seconds") == Quota("q", 100, 5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHOP_RATE_LIMIT_SIGN_IN", "ten per minute"),
        ("SHOP_RATE_LIMIT_USER", "1/second;100/minute"),
        ("SHOP_RATE_LIMIT_ANONYMOUS", ""),
        ("SHOP_RATE_LIMIT_BLOCK_SECONDS", "0"),
        ("SHOP_TRUSTED_PROXIES", "10.0.0.1,proxy.internal"),
    ],
)
def test_bad_abuse_settings_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, env_file=None)


def test_trusted_proxies_are_a_comma_separated_list() -> None:
    settings = load_settings({"SHOP_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.10"}, env_file=None)
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.10")


def _scope(peer: str | None, *forwarded: str) -> dict[str, object]:
    return {
        "client": (peer, 5000) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


PROXIES = TrustedProxies(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("scope", "proxies", "expected"),
    [
        pytest.param(_scope("203.0.113.9", "1.1.1.1"), PROXIES, "203.0.113.9", id="untrusted-peer"),
        pytest.param(
            _scope("10.0.0.5", "1.1.1.1"), TrustedProxies([]), "10.0.0.5", id="no-proxies"
        ),
        pytest.param(_scope("10.0.0.5", "203.0.113.9"), PROXIES, "203.0.113.9", id="one-proxy"),
        pytest.param(
            _scope("10.0.0.5", "6.6.6.6, 203.0.113.9, 10.0.0.7"),
            PROXIES,
            "203.0.113.9",
            id="forged-left-part-ignored",
        ),
        pytest.param(
            _scope("10.0.0.5", "6.6.6.6", "203.0.113.9"), PROXIES, "203.0.113.9", id="two-headers"
        ),
        pytest.param(_scope("10.0.0.5"), PROXIES, "10.0.0.5", id="proxy-without-header"),
        pytest.param(
            _scope("10.0.0.5", "10.0.0.9, 10.0.0.8"), PROXIES, "10.0.0.9", id="all-trusted"
        ),
        pytest.param(
            _scope("10.0.0.5", "nonsense, 10.0.0.8"), PROXIES, "10.0.0.8", id="garbage-hop"
        ),
        pytest.param(_scope("::1", "2001:db8::7"), PROXIES, "2001:db8::7", id="ipv6"),
        pytest.param(_scope(None, "1.1.1.1"), PROXIES, None, id="no-peer"),
    ],
)
def test_the_client_address_trusts_forwarding_only_from_proxies(
    scope: dict[str, object], proxies: TrustedProxies, expected: str | None
) -> None:
    address = client_address(scope, proxies)  # type: ignore[arg-type]
    assert (None if address is None else str(address)) == expected


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    first = caller_key(ipaddress.ip_address("2001:db8:1:2:aaaa::1"))
    second = caller_key(ipaddress.ip_address("2001:db8:1:2:bbbb::9"))
    assert first == second == "2001:db8:1:2::/64"
    assert caller_key(ipaddress.ip_address("::ffff:203.0.113.9")) == "203.0.113.9"
    assert caller_key(None) == "unknown"
