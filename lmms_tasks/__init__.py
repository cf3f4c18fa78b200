"""lmms_tasks."""
