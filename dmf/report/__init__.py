"""Reports over finished runs: sweep tables (mode=collect)."""
