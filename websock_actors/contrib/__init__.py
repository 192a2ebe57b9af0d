"""Integrations with other tools. Nothing in the library imports these modules: some (Locust)
monkey-patch the process when imported."""
