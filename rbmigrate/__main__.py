"""`python -m rbmigrate` runs the same entry point as the console script."""

from rbmigrate.cli import main

raise SystemExit(main())
