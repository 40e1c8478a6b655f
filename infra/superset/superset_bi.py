"""Superset for fangxian's BI: runs inside the Superset virtualenv (infra/superset/install.sh),
never in the project's own environment (Superset pins its own Flask, SQLAlchemy 1.4 …).

    python superset_bi.py setup  --home DIR [--clickhouse-url URL] [--admin-password-env NAME]
    python superset_bi.py charts --home DIR [--clickhouse-url URL]

``setup`` makes a Superset home (config + SQLite metadata database), creates the roles and an
``admin`` user, and imports the dashboard bundle beside this file (``dashboard/``) with its
database connection pointed at ``URL`` (``clickhouse+native://bi_reader:PASSWORD@HOST:PORT/DB``,
default ``$FANGXIAN_BI_CLICKHOUSE_URL``: a password stays out of the process list).
``charts`` does the same, then runs every chart of the bundle through Superset's own chart-data
layer (the query context each chart was saved with, Superset's SQL generation, its
ClickHouse engine spec, its SQLAlchemy engine) and prints one JSON line per chart:
``{"chart": ..., "rows": N, "data": [...], "sql": ..., "error": ...}``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import sys
import zipfile
from pathlib import Path
from typing import Any

BUNDLE = Path(__file__).resolve().with_name("dashboard")
BUNDLE_ROOT = "fangxian_bi"  # Superset wants one top folder inside an export zip
DATABASE_FILE = "databases/fangxian_ClickHouse.yaml"
ADMIN = "admin"
DEFAULT_CLICKHOUSE_URL = "clickhouse+native://bi_reader@127.0.0.1:9000/fangxian"

# Superset 6.1 passes SQL through sqlglot, which writes toStartOfHour(x) as dateTrunc('HOUR', x):
# a function ClickHouse has only since 20.x. These forms survive sqlglot unchanged and read the
# same on every server version (toStartOfQuarter has no such form here: that grain is off).
TIME_GRAINS = {
    "PT1M": "toDateTime(intDiv(toUInt32(toDateTime({col})), 60) * 60)",
    "PT1H": "toDateTime(intDiv(toUInt32(toDateTime({col})), 3600) * 3600)",
    "P1D": "toDateTime(toDate(toDateTime({col})))",
    "P1W": "toDateTime(toDate(toDateTime({col})) - (toDayOfWeek(toDateTime({col})) - 1))",
    "P1M": "toDateTime(toDate(toDateTime({col})) - (toDayOfMonth(toDateTime({col})) - 1))",
    "P1Y": "toDateTime(toDate(toDateTime({col})) - (toDayOfYear(toDateTime({col})) - 1))",
}


def write_config(home: Path) -> Path:
    """A superset_config.py in ``home``: SQLite metadata, a secret key made once and kept in
    ``home`` (never in the repo), no example data, no telemetry."""
    home.mkdir(parents=True, exist_ok=True)
    key_file = home / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        key_file.chmod(0o600)
    config = home / "superset_config.py"
    config.write_text(
        "# written by fangxian infra/superset/superset_bi.py\n"
        "from pathlib import Path\n"
        f"_HOME = Path({str(home)!r})\n"
        "SECRET_KEY = (_HOME / 'secret_key').read_text().strip()\n"
        "SQLALCHEMY_DATABASE_URI = 'sqlite:///' + str(_HOME / 'superset.db')\n"
        "SQLALCHEMY_EXAMPLES_URI = SQLALCHEMY_DATABASE_URI\n"
        "BABEL_DEFAULT_LOCALE = 'zh'\n"
        "LANGUAGES = {'zh': {'flag': 'cn', 'name': '简体中文'},\n"
        "             'en': {'flag': 'us', 'name': 'English'}}\n"
        "SUPERSET_WEBSERVER_PORT = 8088\n"
        "WTF_CSRF_ENABLED = True\n"
        "TALISMAN_ENABLED = False\n"
        "FEATURE_FLAGS = {'DASHBOARD_NATIVE_FILTERS': True}\n"
        "DATA_CACHE_CONFIG = {'CACHE_TYPE': 'NullCache'}\n"
        "SCARF_ANALYTICS = False\n"
        f"TIME_GRAIN_ADDON_EXPRESSIONS = {{'clickhouse': {TIME_GRAINS!r}}}\n"
        "TIME_GRAIN_DENYLIST = ['P3M']\n",
        encoding="utf-8",
    )
    return config


def bundle_zip() -> dict[str, str]:
    """The bundle's files as Superset's importer reads them (path inside the zip → text)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(BUNDLE.rglob("*.yaml")):
            archive.write(path, f"{BUNDLE_ROOT}/{path.relative_to(BUNDLE)}")
    from superset.commands.importers.v1.utils import get_contents_from_bundle

    with zipfile.ZipFile(buffer) as archive:
        contents: dict[str, str] = get_contents_from_bundle(archive)
    return contents


def _app(home: Path) -> Any:
    os.environ["SUPERSET_CONFIG_PATH"] = str(write_config(home))
    from superset.app import create_app

    return create_app()


def _upgrade_metadata() -> None:
    import superset
    from flask_migrate import upgrade

    upgrade(directory=str(Path(superset.__file__).with_name("migrations")))


def _admin(admin_password: str) -> Any:
    """What `superset init` does (every view's permissions, the built-in roles), then the
    ``admin`` user."""
    from superset import security_manager
    from superset.extensions import appbuilder, db

    appbuilder.add_permissions(update_perms=True)
    security_manager.sync_role_definitions()
    db.session.commit()
    user = security_manager.find_user(username=ADMIN)
    if user is None:
        user = security_manager.add_user(
            ADMIN,
            "fangxian",
            "admin",
            "admin@localhost",
            security_manager.find_role("Admin"),
            password=admin_password,
        )
    return user


def _import(clickhouse_url: str) -> None:
    from superset.commands.chart.importers.v1 import ImportChartsCommand
    from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
    from superset.extensions import db
    from superset.models.core import Database

    contents = bundle_zip()
    key = DATABASE_FILE
    import yaml

    database = yaml.safe_load(contents[key])
    database["sqlalchemy_uri"] = clickhouse_url
    contents[key] = yaml.safe_dump(database, allow_unicode=True)
    password = _password_of(clickhouse_url)
    passwords = {key: password} if password else None
    # the dashboard import adds charts, datasets and the database only when missing: import
    # them with overwrite first, so a second `make bi` brings the repo's newer versions in
    charts = {k: v for k, v in contents.items() if not k.startswith("dashboards/")}
    charts["metadata.yaml"] = contents["metadata.yaml"].replace("type: Dashboard", "type: Slice")
    ImportChartsCommand(charts, overwrite=True, passwords=passwords).run()
    ImportDashboardsCommand(contents, overwrite=True, passwords=passwords).run()
    # a stored connection keeps its URI on import: point it at the given server
    found = db.session.query(Database).filter_by(uuid=database["uuid"]).one()
    found.set_sqlalchemy_uri(clickhouse_url)
    db.session.commit()


def _password_of(url: str) -> str | None:
    from sqlalchemy.engine.url import make_url

    password = make_url(url).password
    return None if password is None else str(password)


def run_charts() -> list[dict[str, Any]]:
    """Every chart of the bundle's dashboard, run through Superset's chart-data command."""
    import yaml
    from superset.charts.schemas import ChartDataQueryContextSchema
    from superset.commands.chart.data.get_data_command import ChartDataCommand
    from superset.extensions import db
    from superset.models.slice import Slice

    results = []
    for path in sorted((BUNDLE / "charts").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        chart = db.session.query(Slice).filter_by(uuid=spec["uuid"]).one()
        context = json.loads(chart.query_context)
        context["datasource"] = {"id": chart.datasource_id, "type": "table"}
        result: dict[str, Any] = {"chart": path.stem, "title": chart.slice_name}
        try:
            query_context = ChartDataQueryContextSchema().load(context)
            command = ChartDataCommand(query_context)
            command.validate()
            (query,) = command.run()["queries"]
            result.update(
                rows=query["rowcount"], data=query["data"], sql=query["query"], error=None
            )
        except Exception as err:  # reported per chart: one broken chart must not hide others
            result.update(rows=0, data=[], sql=None, error=f"{type(err).__name__}: {err}")
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["setup", "charts"])
    parser.add_argument("--home", type=Path, required=True, help="Superset home directory")
    parser.add_argument(
        "--clickhouse-url",
        default=os.environ.get("FANGXIAN_BI_CLICKHOUSE_URL", DEFAULT_CLICKHOUSE_URL),
        help="clickhouse+native://bi_reader:PASSWORD@HOST:PORT/DB (default: the environment's "
        "FANGXIAN_BI_CLICKHOUSE_URL, else the compose stack's published port on this machine)",
    )
    parser.add_argument(
        "--admin-password-env",
        default="SUPERSET_ADMIN_PASSWORD",
        help="environment variable holding the admin password (random when unset)",
    )
    args = parser.parse_args(argv)
    app = _app(args.home.resolve())
    with app.app_context(), app.test_request_context():
        from flask import g

        _upgrade_metadata()
        password = os.environ.get(args.admin_password_env) or secrets.token_urlsafe(16)
        g.user = _admin(password)
        _import(args.clickhouse_url)
        if args.command == "setup":
            print(f"Superset home {args.home}: dashboard imported, user {ADMIN!r}", flush=True)
            return 0
        for result in run_charts():
            print(json.dumps(result, ensure_ascii=False, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
