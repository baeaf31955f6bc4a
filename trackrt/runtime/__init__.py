"""Inference runtime: hits in, tracks out, behind interchangeable backends (no torch needed)."""
