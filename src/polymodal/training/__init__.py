"""Training: polymodal's own loop over PyTorch; the model code imports without it."""
