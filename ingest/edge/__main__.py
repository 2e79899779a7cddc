"""`python -m ingest.edge CONFIG` (the same as `riskwatch edge CONFIG`)."""

from ingest.edge import main

raise SystemExit(main())
