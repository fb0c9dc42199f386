"""`python -m speakrl ...`: the speakrl CLI."""

from speakrl.cli import main

if __name__ == "__main__":
    main()
