"""The film mirror: a latent index of the training film, nearest-moment search, live mirror controls, resequencing."""
