"""Training: Hungarian matching, losses, the training loop and safetensors checkpoints.

Public entry points (import from the submodules; this package imports nothing itself):
- `trackrt.train.config.TrainConfig` (YAML via `trackrt.train.cli.load_train_config`);
- `trackrt.train.loop.train(config, resume=False)` → final checkpoint per stage (the optimisation loop
  is `trackrt.train.stage_runner.run_stage`);
- `trackrt.train.checkpoint.save_checkpoint` / `load_checkpoint(path) -> (model, CheckpointConfig)` /
  `read_checkpoint_config`; resumable state in `trackrt.train.train_state`;
- `trackrt.train.evaluate.evaluate_directory` (what `trackrt evaluate` runs), hit-filter quality in
  `trackrt.train.filter_metrics`;
- `trackrt.train.matching` / `trackrt.train.losses` (DESIGN §4 cost and losses);
- `trackrt.train.queries.training_query_indices` (how dynamic queries are formed in training).
"""
