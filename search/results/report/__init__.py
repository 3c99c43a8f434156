"""The study report that `search.analyze` writes: `trials` (trials.csv, loss curves, Optuna's plots),
`sheets` (prediction and Grad-CAM sheets of the best trials' checkpoints) and `page` (index.html)."""
