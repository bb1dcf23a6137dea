"""livevae's offline training: dataset reader, discriminator, losses, training loop and recipes."""
