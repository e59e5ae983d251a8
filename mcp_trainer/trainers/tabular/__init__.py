"""scikit-learn models of every family, tuned by Optuna searches scored by cross-validation."""
