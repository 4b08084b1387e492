// Symbolization: addresses to functions.
