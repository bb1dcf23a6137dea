"""The control state and everything that shapes it: curves, LFOs, latent modulation, scenes."""
