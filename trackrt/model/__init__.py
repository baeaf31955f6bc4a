"""PyTorch modules: attention backends, encoder, hit filter, tracker and decoders."""
