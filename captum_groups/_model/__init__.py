"""The user's model, read and guarded: layer capture and patching hooks, the guards
that leave the model as it was, sub-networks between layers, Captum's private helpers."""
