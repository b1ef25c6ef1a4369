"""Frozen encoders of the clean images, REPA's alignment targets: encoder(images) -> [(N, tokens, dim), ...],
one tensor per SiT projector (model.z_dims = encoder.z_dims)."""
