"""Inputs from the outside world: image preprocessing, sample sets, feed files and seeded random feeds."""
