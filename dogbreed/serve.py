"""`python -m dogbreed.serve`: the command; its code is `dogbreed.serving.server`."""

from dogbreed.serving.server import main

if __name__ == "__main__":
    main()
