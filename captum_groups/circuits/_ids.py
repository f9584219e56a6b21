"""Node ids shared by the circuit graph and its drawing."""

TARGET = "target"
"""Node id of the circuit's target."""
