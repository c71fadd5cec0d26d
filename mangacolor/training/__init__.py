"""Training: generic loop pieces (run directory, metrics, samples) and one module per trainer."""
