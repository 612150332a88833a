"""One router per resource: health, enrolment, sync, indicators, events."""
