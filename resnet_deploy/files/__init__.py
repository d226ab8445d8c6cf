"""File safety: every output planned and checked before any work (``output_plan``), and what an
existing file says about where it came from, so a command replaces only its own output (``provenance``)."""
