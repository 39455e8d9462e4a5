"""Viewer parts of the plugin: the human-feature inspector (skeletons, source views, opening camera)."""
