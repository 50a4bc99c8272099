"""Training KoBERT from scratch: corpus -> uint16 shards -> MLM pretraining -> NSMC fine-tuning.

Each step is one module with one entry function (`build_shards`, `pretrain`,
`finetune_nsmc`) and a `kobert` subcommand with the same name.  Nothing here is
imported by `import kobert`; torch is imported only inside the functions that train.
"""
