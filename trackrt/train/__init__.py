"""Training: Hungarian matching, losses, the training loop and safetensors checkpoints."""
