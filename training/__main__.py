"""`python -m speakrl.training train|eval ...`: the speakrl CLI, for launchers that take a module
(`accelerate launch -m speakrl.training train ...`)."""

from speakrl.cli import main

if __name__ == "__main__":
    main()
