"""Losses, data sets, the phantom cohort, training and evaluation."""
