"""Pure privacy engineering on data frames: SDC, differential privacy, synthesis, evaluation."""
