"""Node ids shared by the circuit graph and its drawing."""

TARGET = "target"
"""Node id of the circuit's target."""

NEXT_TOKEN = "next_token"
"""The target of a language model's circuit: at each chosen position, the logit of the
token that follows it in the input."""
