"""Node ids and names shared by the circuit graph, its settings and its drawing."""

TARGET = "target"
"""Node id of the circuit's target."""

NEXT_TOKEN = "next_token"
"""The target of a language model's circuit: at each chosen position, the logit of the
token that follows it in the input."""

EAP_PATHS = ("activations", "inputs")
"""What EAP-IG interpolates: each node's output on its own, or the embedding."""
