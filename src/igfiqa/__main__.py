"""``python -m igfiqa``: the same command line as the ``igfiqa`` console script."""

from igfiqa.cli import main

if __name__ == "__main__":
    main()
