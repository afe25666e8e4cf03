"""Dev tooling that runs the app on a laptop: Azurite, Functions host stand-in, Event Grid, ACS sandbox."""
