"""vigil fatigue backend: face landmarks -> eye closure, blinks, PERCLOS, yawns, nods -> fatigue level."""
