"""The memory service: add, search and manage memories."""
