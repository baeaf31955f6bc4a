"""Tracking metrics: track-to-particle matching, efficiencies, fake/duplicate rates, TrackML score."""
