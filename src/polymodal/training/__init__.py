"""Training with Lightning; the model code imports without it."""
