"""Predictive scoring: features (the one place training and serving share), labels, training,
the model registry, bulk scoring, explanations and suggested rule weights.

DESIGN.md §4 "The machine-learned score": a probability from the active model, shown beside
the rule score and optionally blended into it by the rule set's `model_weight`."""
