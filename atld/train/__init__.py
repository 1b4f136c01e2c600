"""Training: the loop (`trainer`), its optimizers and saved state (`optim`), and data-parallel
training (`distributed`). Nothing is imported here, so that `atld.runs.store` can use `optim`
while the trainer uses the store."""
