"""Using a trained run: `load` and the classifier, and the predict and embed commands."""
