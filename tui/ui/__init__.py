"""The Textual console: the App, the console screen with its panes, modal screens, widgets
and the one command registry.  Everything here runs on the UI thread unless marked."""
