"""``fangxian acl``: the Kafka ACL table (infra.acl) shown, or applied to the broker.

``fangxian acl apply`` connects with the process's own Kafka settings, which must be a super
user's (``FANGXIAN_KAFKA_USERNAME``/``FANGXIAN_KAFKA_PASSWORD[_FILE]``). For each role whose
password is given in ``FANGXIAN_ACL_PASSWORD_<ROLE>`` or ``FANGXIAN_ACL_PASSWORD_<ROLE>_FILE``
(e.g. ``FANGXIAN_ACL_PASSWORD_DEVICE_FILE=/run/secrets/kafka_device_password``) it first creates
or updates that user's SCRAM-SHA-512 credential, then makes the broker's ACLs converge on the
table: missing ACLs are created, ALLOW ACLs of the table's principals that the table no longer
has are deleted (other principals' ACLs and DENY ACLs are left alone). It prints every ACL it
added (+) and removed (-); ``--dry-run`` prints the plan and changes nothing.
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
    from infra.acl import acl_table, apply_acls, describe_acl

    table = acl_table(settings)
    passwords = role_passwords(list(table.principals.roles()))
    result = apply_acls(settings, table, passwords=passwords, dry_run=args.dry_run)
    if result.dry_run:
        print(
            f"计划 plan (--dry-run, 未做任何改动 nothing changed) on {settings.kafka_bootstrap}: "
            f"将新增 would add {len(result.added)}, 将删除 would remove {len(result.removed)}"
        )
    else:
        print(
            f"ACL 已同步 applied on {settings.kafka_bootstrap}: 新增 added {len(result.added)}, "
            f"删除 removed {len(result.removed)}; "
            f"已设置凭据 credentials set: {', '.join(result.users) or '(none)'}"
        )
    for acl in result.added:
        print(f"  + {describe_acl(acl)}")
    for acl in result.removed:
        print(f"  - {describe_acl(acl)}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acl = sub.add_parser("acl", help="Kafka 访问控制 ACLs of every principal").add_subparsers(
        dest="sub", required=True
    )
    acl.add_parser("show", help="print the principal → ACL table").set_defaults(func=cmd_acl_show)
    apply = acl.add_parser(
        "apply",
        help="create SCRAM users (FANGXIAN_ACL_PASSWORD_<ROLE>), add the table's ACLs, "
        "remove its principals' stale ones",
    )
    apply.add_argument(
        "--dry-run", action="store_true", help="只打印计划 print what would change, change nothing"
    )
    apply.set_defaults(func=cmd_acl_apply)
