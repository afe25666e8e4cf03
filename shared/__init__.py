"""Core package of the ACS Email insights app: pure decisions inside, Azure at the edge."""
