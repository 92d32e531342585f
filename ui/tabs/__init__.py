"""One module per tab; each has ``build(ctx, run_picker)`` and the pure functions it shows."""
