"""``python -m tdviz ...`` is the ``tdviz`` command (also under ``torchrun -m tdviz``)."""

from tdviz_cli.main import main

if __name__ == "__main__":
    main()
