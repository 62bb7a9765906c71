"""Training: the run (trainer, fit and test, publish), checkpoints and resume, the run directory, the metric
lines tuning jobs parse, the SageMaker container contract, and composing the training config."""
