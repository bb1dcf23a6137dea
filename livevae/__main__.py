"""`python -m livevae` runs the CLI."""

from livevae.cli import main

raise SystemExit(main())
