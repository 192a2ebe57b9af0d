"""Integrations with other tools. Nothing in the library imports these modules: some (Locust)
monkey-patch the process when imported.

    locust.py         WebSocketUser: a Locust user over websock_actors' client
    locust_pushes.py  pushes under Locust: their type, the event, the counts reported at the end
"""
