"""Where sign-in sends a browser (``next=``): the console's own pages only, never another site
(an open redirect through the sign-in form), as a table of cases."""

from __future__ import annotations

import pytest

from fangxian.console.nav import HOME, login_url, safe_next


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("/alerts/a-123", "/alerts/a-123", id="an alert's page"),
        pytest.param("/decisions?community=91350100M000100Y43", None, id="a page with its query"),
        pytest.param("/alerts", "/alerts", id="the alerts page"),
        pytest.param(None, HOME, id="missing"),
        pytest.param("", HOME, id="empty"),
        pytest.param("https://evil.example/x", HOME, id="another site"),
        pytest.param("//evil.example/x", HOME, id="scheme-relative: another host"),
        pytest.param("/\\evil.example", HOME, id="slash backslash: browsers read another host"),
        pytest.param("/%5Cevil.example", HOME, id="encoded backslash"),
        pytest.param("/%2F%2Fevil.example", HOME, id="encoded double slash"),
        pytest.param("javascript:alert(1)", HOME, id="a script URL"),
        pytest.param("alerts", HOME, id="not absolute"),
        pytest.param("/alerts\r\nSet-Cookie: x=1", HOME, id="header injection"),
        pytest.param("/alerts%0d%0aSet-Cookie:x", HOME, id="encoded header injection"),
        pytest.param("/login?next=/alerts", HOME, id="back to sign-in: no loop"),
        pytest.param("/logout", HOME, id="sign-out"),
        pytest.param("/alerts/" + "a" * 600, HOME, id="too long"),
        pytest.param("/alerts/<script>", HOME, id="markup in the path"),
        pytest.param(["/alerts"], HOME, id="not a string (a repeated field)"),
    ],
)
def test_safe_next(value: object, expected: str | None) -> None:
    assert safe_next(value) == (value if expected is None else expected)


@pytest.mark.parametrize(
    ("path", "query", "url"),
    [
        pytest.param("/alerts/a-1", "", "/login?next=%2Falerts%2Fa-1", id="an alert's page"),
        pytest.param(
            "/decisions", "community=X1", "/login?next=%2Fdecisions%3Fcommunity%3DX1", id="query"
        ),
        pytest.param("/alerts", "", "/login", id="the alerts page: the default, not carried"),
        pytest.param("//evil", "", "/login", id="control: a foreign target is not carried"),
    ],
)
def test_login_url_carries_the_page_asked_for(path: str, query: str, url: str) -> None:
    assert login_url(path, query) == url
