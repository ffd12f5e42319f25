"""Evaluation metrics of SyncDiffusion and SDG: one file per metric, each a function (and later a class)."""
