"""``python -m cytoedge.edge_app`` is ``edge-app``."""

from cytoedge.edge_app.cli import main

raise SystemExit(main())
