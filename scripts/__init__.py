"""The command-line steps, each `python -m scripts.<name>`. Importing the package first composes
the config's sections (tools.workflows.config), so every script loads configs with all of them."""

import tools.workflows.config  # noqa: F401
