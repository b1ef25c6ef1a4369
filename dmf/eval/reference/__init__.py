"""Reference statistics: real-image sources, building statistics from them, and the statistics files."""
