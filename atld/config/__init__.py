"""Configuration: the frozen dataclasses every command and page is built from (`train.TrainConfig`,
`eval.EvalConfig`, `latent.LatentConfig`), the closed vocabularies (`vocab`), the settings read
from the environment (`settings`) and the description that turns a config field into a CLI flag
and an app widget (`fields`).

Nothing is imported here: `vocab`, `settings` and `fields` are torch-free and sit below
everything; the config classes sit above the registries they validate against (datasets,
architectures, methods, attacks)."""
