"""Administrative areas (city → district → township → village) and their import."""
