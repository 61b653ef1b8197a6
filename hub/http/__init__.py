"""The HTTP adapter: one route module per part of the API, and what they share."""
