"""Hyperparameter search on one machine: Optuna over the shared search space, trials on cached features."""
