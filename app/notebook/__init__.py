"""The notebook page (`page`): one document the model continues at its end, its continuations marked (and, with Probabilities, coloured token by token) until edited."""
