"""The `cardpool` command (also `kubectl cardpool`)."""
