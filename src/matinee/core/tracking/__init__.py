"""Experiment tracking: metrics and parameters, inside flows and out."""
