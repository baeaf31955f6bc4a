"""Events: TrackML I/O, detector geometry, simulation and hit features (numpy only)."""
