"""Multi-process serving: a supervisor (no event loop) forking workers that each run a Server.

``supervisor.run(config)`` is what ``asgiserve --workers N`` (N > 1) calls. See supervisor.py
for the process model and signals, worker.py for the child side and its pipe protocol.
"""
