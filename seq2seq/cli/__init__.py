"""The console scripts: Hydra entry points, the commands' schemas, key checking, the training launch,
the interactive prompt and sweeps. The only layer that knows about the command line."""
