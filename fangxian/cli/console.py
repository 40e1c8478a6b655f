"""``fangxian console``: the staff console in the browser; ``fangxian console passwd STAFF_ID``
sets a staff member's password in the credentials file."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from fangxian.core.settings import Settings


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    if args.port:
        settings = settings.replace(console_port=args.port)
    if args.action == "passwd":
        return _passwd(args, settings)
    from fangxian.console.server import run_console

    return run_console(settings)


def _audit_passwd(settings: Settings, staff_id: str) -> bool:
    """The audit row of a password set from the command line (who ran it, for whom, from
    where; never the password), before it is set. False when it cannot be kept: nothing is
    changed."""
    from fangxian.reporting.audit import record_cli_action, staff_entry
    from sinks.audit import PASSWORD_CHANGE

    entry = staff_entry(settings, PASSWORD_CHANGE, details={"target": staff_id, "via": "cli"})
    return record_cli_action(settings, entry, nothing_done="未修改密码 nothing changed")


def _passwd(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.console.auth import MIN_PASSWORD_CHARS, Credentials

    if not args.staff_id:
        print("用法 usage: fangxian console passwd STAFF_ID", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("新密码 new password: ")
        if getpass.getpass("再输一次 again: ") != password:
            print("两次输入不一致 the passwords differ", file=sys.stderr)
            return 1
    if len(password) < MIN_PASSWORD_CHARS:
        print(
            f"密码至少 {MIN_PASSWORD_CHARS} 个字符 the password needs {MIN_PASSWORD_CHARS}+ "
            "characters",
            file=sys.stderr,
        )
        return 1
    if not _audit_passwd(settings, args.staff_id):
        return 1
    try:
        Credentials(Path(settings.console_credentials_file)).set_password(args.staff_id, password)
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 1
    print(f"已设置密码 password set for {args.staff_id} in {settings.console_credentials_file}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("console", help="值班台 the staff console in the browser (or: passwd ID)")
    p.add_argument("action", nargs="?", choices=["serve", "passwd"], default="serve")
    p.add_argument("staff_id", nargs="?", help="for passwd: the staff id (from the roster)")
    p.add_argument("--port", type=int, default=0, help="port (FANGXIAN_CONSOLE_PORT, 6080)")
    p.add_argument(
        "--password-stdin", action="store_true", help="passwd: read the password from stdin"
    )
    p.set_defaults(func=cmd_console)
