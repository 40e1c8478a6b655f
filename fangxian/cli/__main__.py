"""``python -m fangxian.cli``: the same as the ``fangxian`` command."""

from fangxian.cli import main

raise SystemExit(main())
