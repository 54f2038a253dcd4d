"""Speed-ups that compute the same function with less work; each is checked against the model."""
