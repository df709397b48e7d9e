"""Jobs and schedules on the NYSE calendar."""
