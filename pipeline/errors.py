"""Errors a user can act on. The CLI prints their message as one sentence and exits with code 2."""


class SpeakrlError(Exception):
    """Base class: the message is shown to the user as-is."""


class ConfigError(SpeakrlError):
    """A bad config file, flag or recipe."""


class CatalogError(SpeakrlError):
    """A tool catalog that cannot be loaded."""


class SourceError(SpeakrlError):
    """An input corpus (SGD dialogue files and their schema) that cannot be read."""


class RunDirError(SpeakrlError):
    """A run directory that is missing, unwritable or inconsistent."""


class LLMError(SpeakrlError):
    """A non-transient failure talking to a model endpoint (bad key, unknown model, bad request)."""


class BudgetExceeded(SpeakrlError):
    """The configured cost limit was reached; the run stopped cleanly and can be resumed."""


class PublishError(SpeakrlError):
    """A dataset that cannot be published, or a Hub refusal."""


class TrainingError(SpeakrlError):
    """A dataset, recipe or model that the trainer cannot use."""
