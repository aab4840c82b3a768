"""One module per schema revision, oldest first (v0001_…, v0002_…)."""
