"""Training building blocks: data mixtures and packing, the resumable loop."""
