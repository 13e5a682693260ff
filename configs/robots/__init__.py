"""Mass-spring designs: robots, cloth and rope."""
