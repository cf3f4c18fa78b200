"""openrlhf_video."""
