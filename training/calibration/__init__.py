"""From similarity scores to likelihood ratios: scored pairs, calibration by time band, validation
metrics and the verbal scale an examiner reports with.

Plain numpy, scipy and scikit-learn, so that the service can assess a score without loading torch.
"""
