"""One router per resource: health, enrolment, sync, events, indicators, devices."""
