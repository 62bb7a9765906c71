"""One adapter per SageMaker serving image, each a thin shell over `dogbreed.serving.service`."""
