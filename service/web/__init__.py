"""The web dashboard served at ``/`` and Optuna's own dashboard under ``/optuna``."""
