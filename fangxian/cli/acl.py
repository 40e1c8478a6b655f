"""``fangxian acl``: the Kafka ACL table (infra.acl) shown, or applied to the broker.

``fangxian acl apply`` connects with the process's own Kafka settings, which must be a super
user's (``FANGXIAN_KAFKA_USERNAME``/``FANGXIAN_KAFKA_PASSWORD[_FILE]``). For each role whose
password is given in ``FANGXIAN_ACL_PASSWORD_<ROLE>`` or ``FANGXIAN_ACL_PASSWORD_<ROLE>_FILE``
(e.g. ``FANGXIAN_ACL_PASSWORD_DEVICE_FILE=/run/secrets/kafka_device_password``) it first creates
or updates that user's SCRAM-SHA-512 credential, then creates every ACL of the table.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from fangxian.core.settings import Settings, env_or_file

PASSWORD_ENV = "FANGXIAN_ACL_PASSWORD_"


def role_passwords(roles: list[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """role → password for the roles whose password variable (or ``_FILE``) is set."""
    env = os.environ if env is None else env
    found = {}
    for role in roles:
        value = env_or_file(env, PASSWORD_ENV + role.upper())
        if value:
            found[role] = value
    return found


def cmd_acl_show(args: argparse.Namespace, settings: Settings) -> int:
    from infra.acl import acl_table

    print(acl_table(settings).render())
    return 0


def cmd_acl_apply(args: argparse.Namespace, settings: Settings) -> int:
    from infra.acl import acl_table, apply_acls

    table = acl_table(settings)
    passwords = role_passwords(list(table.principals.roles()))
    result = apply_acls(settings, table, passwords=passwords)
    print(
        f"ACL 已写入 applied: {result.created} ACLs on {settings.kafka_bootstrap}; "
        f"credentials set 已设置凭据: {', '.join(result.users) or '(none)'}"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acl = sub.add_parser("acl", help="Kafka 访问控制 ACLs of every principal").add_subparsers(
        dest="sub", required=True
    )
    acl.add_parser("show", help="print the principal → ACL table").set_defaults(func=cmd_acl_show)
    acl.add_parser(
        "apply", help="create SCRAM users (FANGXIAN_ACL_PASSWORD_<ROLE>) and every ACL"
    ).set_defaults(func=cmd_acl_apply)
