"""`python -m dogbreed.report`: the command; its code is `dogbreed.debug.report`."""

from dogbreed.debug.report import main

if __name__ == "__main__":
    main()
