"""A run from its config: the schema and validation (`config`), the objects built from it
(`build`), the train / eval entries (`train`, `evaluate`), and what a run writes (`metrics`,
`artifacts`). The command line (`negojax.main`) is the only caller of the entries."""
