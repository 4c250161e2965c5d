"""pacsref."""
