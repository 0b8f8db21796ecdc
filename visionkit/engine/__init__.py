"""Training and inference loops, checkpoints, optimizers and logs."""
