"""Use cases, handed their edge objects; no azure.*."""
