"""addins."""
