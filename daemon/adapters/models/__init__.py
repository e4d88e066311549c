"""The model kind's adapter: observe releases in the model store, train candidates, promote."""
