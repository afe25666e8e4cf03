"""Pure rules and shapes: no azure.*, no I/O."""
