"""regbench's Optuna sweeper: see optuna_sweeper.py."""
