"""Chat-platform adapters arrive with the bots issue."""
