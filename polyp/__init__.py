"""polyp: the segmentation core of polyp-search (data, models, losses, metrics, trainer, prediction)."""
