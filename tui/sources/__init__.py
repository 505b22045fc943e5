"""The only code that talks to the broker: events receiver, queue-length poller, inspect/control.

Nothing here imports Textual or touches widgets; ``tui.check`` imports these modules headless.
"""
