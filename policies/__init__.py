"""Release policies: the versioned document, its validation and the board's approval rules."""
