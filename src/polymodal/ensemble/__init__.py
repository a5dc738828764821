"""Weighted ensembles of trained members (neural runs and classical models) that load as one run."""
