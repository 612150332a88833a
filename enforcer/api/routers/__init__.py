"""One router per resource: health, enroll, sync, events, indicators, devices, discovery, metrics."""
