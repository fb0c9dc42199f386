"""`python -m training train|eval ...`: the speakrl CLI, for launchers that take a module (`accelerate launch -m training`)."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
