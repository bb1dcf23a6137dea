"""livevae: a live video instrument built on a VAE-GAN."""

__version__ = "0.1.0"
