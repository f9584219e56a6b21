"""Figure output: text in the package's figures stays plain text (no mathtext)."""
