"""Making the images: the per-index generation loop, its seeds, resumable partial states, writers and precision."""
