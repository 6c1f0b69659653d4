"""``python -m memadv``: the same command line as the ``memadv`` script (for a checkout on
PYTHONPATH without an installed entry point)."""
from memadv.cli.main import main

raise SystemExit(main())
