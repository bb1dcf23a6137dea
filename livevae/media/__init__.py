"""Media in: decoding and writing films (PyAV), frame sources and their capture threads, preprocessing."""
