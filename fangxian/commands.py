"""Further CLI commands, registered on the ``fangxian`` parser."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the commands of later features here."""
