"""The run's one-line errors, apart from negojax.run so that any layer (an opponent seat in the
engine, say) can raise them without importing the run's config."""


class ConfigError(ValueError):
    """A user-fixable configuration problem; the message is one line."""


class RunStopped(RuntimeError):
    """The run stopped itself rather than train or export on garbage; the message is one line
    saying what failed, what was saved and what to change."""
