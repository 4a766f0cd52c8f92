"""Monitoring: ``drift_monitor`` scores the live market with the champion and watches it drift."""
