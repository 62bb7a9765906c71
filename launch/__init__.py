"""Cloud translation: Hydra configs → SageMaker requests (and the local twin). No ML code lives here."""
