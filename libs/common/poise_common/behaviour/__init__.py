"""Behaviour measures shared by the analysers: episodes and per-answer summaries."""
