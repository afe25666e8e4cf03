"""Dev tooling that runs the app on a laptop: Azurite, host stand-in, Event Grid, ACS sandbox."""
