"""YAML configs: one file per environment or experiment, shipped as package data."""
