"""Features of 1-minute bars: ``spec`` names them (light), ``indicators`` computes them."""
