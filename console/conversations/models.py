"""Models arrive with the answering and learning-loop issues."""
