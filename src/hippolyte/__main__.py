"""``python -m hippolyte`` and the console script. The command line is imported only when it
runs: a process started by multiprocessing imports its parent's main module again (a fork
server once, for all its children), and this one then costs it nothing."""


def main() -> None:
    from hippolyte.cli import main as run

    run()


if __name__ == "__main__":
    main()
