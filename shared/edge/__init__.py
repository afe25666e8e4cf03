"""Every Azure SDK call, and no decisions."""
