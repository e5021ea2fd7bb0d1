"""One module per step of a quarter; each drives the app's public interfaces."""
