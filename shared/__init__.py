"""Core package of the ACS Email insights function app (decisions in pure modules, Azure at the edge)."""
