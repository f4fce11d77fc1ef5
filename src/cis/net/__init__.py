"""The cluster: node identity, the signed log of public changes, merge and sync."""
