"""The training loop and what it owns: one optimizer step, the budget and schedule, validation, the run's
checkpoints and their resume, metrics and heartbeat lines, checkpoint averaging, and torchrun's processes."""
