"""`python -m dogbreed.export`: the command; its code is `dogbreed.serving.export`."""

from dogbreed.serving.export import main

if __name__ == "__main__":
    main()
