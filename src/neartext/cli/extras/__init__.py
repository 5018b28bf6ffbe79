"""Handlers of the commands that need an optional extra, imported only when one runs
(:func:`neartext.cli.handler_of`)."""
