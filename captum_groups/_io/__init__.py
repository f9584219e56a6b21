"""Input and output: the one data rule (batches, data-set indices), images read at their
scale, files written whole, plain-text figure labels."""
