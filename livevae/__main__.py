"""`python -m livevae` runs the CLI."""

from livevae.cli.main import main

raise SystemExit(main())
