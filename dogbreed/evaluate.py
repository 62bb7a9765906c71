"""`python -m dogbreed.evaluate`: the command; its code is `dogbreed.evaluation.command`."""

from dogbreed.evaluation.command import main

if __name__ == "__main__":
    main()
