"""The judge kinds a run config names (`judge.kind`, and each `judge.ensemble` member's `kind`).

A kind is a builder `fn(config, key, entry, policy, cache_dir) -> Judge`: `entry` is the judge's
fields (the judge block's, or an ensemble member's over the block's), `key` names them in
errors ("judge", "judge.ensemble[1]"), `policy` is the run's policy Model (a local judge may
share its weights), `cache_dir` a folder of the workdir the judge may keep replies in. Built in:
"local" (`negojax.rewards.LocalJudge`) and "http" (`negojax.rewards.HttpJudge`); another is
`--config.judge.kind=my_pkg.my_module:build` or `JUDGES.register("name", build)`.
"""
from negojax.registry import Registry

JUDGES = Registry("judge.kind", {"local": "negojax.run.build:local_judge",
                                 "http": "negojax.run.build:endpoint_judge"})
