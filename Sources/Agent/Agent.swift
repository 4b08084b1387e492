// Agent: composition.
