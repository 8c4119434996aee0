"""Offline training and evaluation: base-policy behaviour cloning, residual RL, evaluation,
PLD collect/distill, CLIs."""
