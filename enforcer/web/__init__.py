"""What the API and the console share, below both so that neither imports the other.

Today: `manual` (the request that creates a manual indicator, from the API's JSON or the
console's form), `events` (the events search read from text filters, and its results in their
wire shape) and `devices` (an enrolled device as administrators see it). `enforcer.webapp` builds the one application that serves both.
"""
