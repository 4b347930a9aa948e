"""PoseForge."""
