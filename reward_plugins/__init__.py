"""reward_plugins."""
