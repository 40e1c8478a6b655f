"""What a channel sends and how it fails."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import aiohttp


@dataclass(frozen=True)
class Recipient:
    """A person to mention: ids per channel kind (empty: not on that channel)."""

    staff_id: str
    display_name: str
    wecom_userid: str = ""
    wecom_mobile: str = ""
    dingtalk_mobile: str = ""
    feishu_open_id: str = ""
    phone: str = ""

    def __repr__(self) -> str:  # contact ids are personal data: never in a log line
        return f"Recipient({self.staff_id!r}, {self.display_name!r})"


@dataclass(frozen=True)
class AckLink:
    staff: Recipient
    url: str


@dataclass(frozen=True)
class OutgoingMessage:
    """A headline, body lines, one acknowledge link per recipient, and who to mention.
    ``delivery_id`` doubles as an idempotency key where a channel has one."""

    delivery_id: str
    headline: str
    lines: tuple[str, ...]
    links: tuple[AckLink, ...]
    mentions: tuple[Recipient, ...]
    severity: str

    def link_lines(self) -> tuple[str, ...]:
        return tuple(
            f"确认收到 Acknowledge ({link.staff.display_name}): {link.url}" for link in self.links
        )

    def fitted_text(self, max_bytes: int, *, prefix: str = "", suffix: str = "") -> str:
        """Headline, body and links within ``max_bytes`` of UTF-8: body lines are cut from the
        end first (marked …), never the headline, the links or the mentions."""
        fixed = [self.headline]
        tail = list(self.link_lines())
        body = list(self.lines)

        def render(lines: list[str]) -> str:
            return prefix + "\n".join([*fixed, *lines, *tail]) + suffix

        text = render(body)
        while len(text.encode()) > max_bytes and body:
            last = body.pop()
            room = max_bytes - len(render(body).encode()) - len("\n…".encode())
            if room > 0:
                cut = last.encode()[:room].decode(errors="ignore")
                if cut:
                    body.append(cut + "…")
                    text = render(body)
                    break
            text = render([*body, "…"]) if body else render(["…"])
        if len(text.encode()) > max_bytes:
            raise MessageTooLarge(f"headline and links alone exceed {max_bytes} bytes")
        return text


class DeliveryError(Exception):
    """A channel refused or failed a message. ``retryable``: worth another try later;
    ``block_s``: the service said to wait this long (rate-limit blocks)."""

    def __init__(
        self, message: str, *, retryable: bool, code: str = "", block_s: float = 0.0
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.block_s = block_s


class MessageTooLarge(DeliveryError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, code="too_large")


class Channel(abc.ABC):
    """One configured target (a group's robot, a webhook URL, an SMS account)."""

    kind: ClassVar[str]
    #: the service's own limit: ``rate_count`` messages per ``rate_window_s`` (a channel file
    #: may lower or raise it for one target)
    rate_count: int = 20
    rate_window_s: float = 60.0

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:  # URLs carry keys: never print them
        return f"{type(self).__name__}({self.name!r})"

    @abc.abstractmethod
    async def send(self, session: aiohttp.ClientSession, message: OutgoingMessage) -> None:
        """Send once; raise ``DeliveryError`` (or an aiohttp/timeout error) on failure."""


async def read_json(response: aiohttp.ClientResponse) -> dict[str, object]:
    """The JSON body of a response; 5xx and non-JSON bodies are retryable failures."""
    if response.status >= 500 or response.status == 429:
        raise DeliveryError(f"HTTP {response.status}", retryable=True, code=str(response.status))
    if response.status >= 400:
        raise DeliveryError(f"HTTP {response.status}", retryable=False, code=str(response.status))
    try:
        data = await response.json(content_type=None)
    except ValueError as err:
        raise DeliveryError(f"not JSON: {err}", retryable=True, code="bad_body") from err
    if not isinstance(data, dict):
        raise DeliveryError("JSON body is not an object", retryable=True, code="bad_body")
    return data
