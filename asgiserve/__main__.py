"""``python -m asgiserve``: the same command as the ``asgiserve`` script."""
from .cli import main

if __name__ == "__main__":
    main()
