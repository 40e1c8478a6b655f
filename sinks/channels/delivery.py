"""Around any channel: a rate limit, a circuit breaker per target, retries with exponential
backoff and full jitter, a timeout per attempt. The outcome is data (``Outcome``), never an
exception, so the dispatcher records it and moves on."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from sinks.channels.base import Channel, DeliveryError, OutgoingMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """``retryable``: worth sending again later (rate limit, breaker open, 5xx or timeouts
    after every try); a refused signature or an unknown target is not."""

    ok: bool
    tries: int
    error: str = ""
    code: str = ""
    retryable: bool = False


_SECRET_IN_URL = re.compile(r"((?:key|access_token|sign|timestamp)=)[^&\s'\"]+|(/hook/)[^/\s?'\"]+")


def scrub(text: str) -> str:
    """An error text without the robot keys, tokens and signatures a URL in it may carry."""
    return _SECRET_IN_URL.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


class RateLimiter:
    """At most ``count`` sends per ``window_s`` (sliding window); ``wait_s`` says how long the
    next send must wait."""

    def __init__(self, count: int, window_s: float, clock: Callable[[], float]) -> None:
        self.count, self.window_s, self._clock = count, window_s, clock
        self._sent: deque[float] = deque()

    def wait_s(self) -> float:
        now = self._clock()
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()
        if len(self._sent) < self.count:
            return 0.0
        return self.window_s - (now - self._sent[0])

    def take(self) -> None:
        self._sent.append(self._clock())


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` failures in a row (or at once for a service-imposed block),
    stays open ``cool_s``, then lets one trial through (half-open)."""

    clock: Callable[[], float]
    threshold: int = 5
    cool_s: float = 30.0
    failures: int = 0
    open_until: float = 0.0
    state_changes: list[str] = field(default_factory=list)

    def allows(self) -> bool:
        return self.clock() >= self.open_until

    @property
    def is_open(self) -> bool:
        return not self.allows()

    def success(self) -> None:
        if self.failures >= self.threshold:
            self.state_changes.append("closed")
        self.failures = 0
        self.open_until = 0.0

    def failure(self, block_s: float = 0.0) -> None:
        self.failures += 1
        if block_s > 0 or self.failures >= self.threshold:
            self.open_until = self.clock() + max(block_s, self.cool_s)
            self.state_changes.append("open")


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int = 4
    base_s: float = 0.5
    cap_s: float = 8.0
    timeout_s: float = 5.0
    max_rate_wait_s: float = 10.0

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform(0, min(cap, base * 2**attempt))."""
        return rng.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))


class Sender:
    """Delivers messages over named channels with one breaker and one rate limiter each."""

    def __init__(
        self,
        channels: dict[str, Channel],
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.channels = channels
        self._session = session
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.breakers = {name: CircuitBreaker(clock) for name in channels}
        self.limiters = {
            name: RateLimiter(c.rate_count, c.rate_window_s, clock) for name, c in channels.items()
        }

    def channel_for(self, target: str) -> str | None:
        """The configured name a target goes through (``sms:<staff_id>`` → ``sms``)."""
        if target in self.channels:
            return target
        base = target.split(":", 1)[0]
        return base if base in self.channels else None

    async def deliver(self, target: str, message: OutgoingMessage) -> Outcome:
        name = self.channel_for(target)
        if name is None:
            return Outcome(False, 0, f"no channel configured named {target!r}", "unconfigured")
        channel = self.channels[name]
        breaker, limiter = self.breakers[name], self.limiters[name]
        error, code = "", ""
        for attempt in range(1, self.retry.max_tries + 1):
            if not breaker.allows():
                return Outcome(
                    False, attempt - 1, error or "circuit open", code or "circuit_open", True
                )
            wait = limiter.wait_s()
            if wait > self.retry.max_rate_wait_s:
                return Outcome(
                    False, attempt - 1, "rate limit reached", "rate_limited_locally", True
                )
            if wait > 0:
                await self._sleep(wait)
            limiter.take()
            try:
                await asyncio.wait_for(channel.send(self._session, message), self.retry.timeout_s)
            except DeliveryError as err:
                error, code = scrub(str(err)), err.code
                breaker.failure(err.block_s)
                if not err.retryable:
                    return Outcome(False, attempt, error, code)
            except (TimeoutError, aiohttp.ClientError) as err:
                error, code = scrub(f"{type(err).__name__}: {err}"), "transport"
                breaker.failure()
            else:
                breaker.success()
                return Outcome(True, attempt)
            log.info("send to %s failed (try %d): %s", name, attempt, error)
            if attempt < self.retry.max_tries:
                await self._sleep(self.retry.backoff_s(attempt, self._rng))
        return Outcome(False, self.retry.max_tries, error, code, True)
