"""SQLModel tables of the store: indicators and revisions, devices, discovery events and rollups."""
