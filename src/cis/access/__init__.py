"""Access to a node from outside: API tokens."""
