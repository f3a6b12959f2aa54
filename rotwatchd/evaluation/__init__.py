"""How good and how fast the model is on this machine: ``rotwatchd eval`` (accuracy,
risk-coverage) and ``rotwatchd bench`` (speed and footprint)."""
