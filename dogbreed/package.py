"""`python -m dogbreed.package`: the command; its code is `dogbreed.serving.package`."""

from dogbreed.serving.package import main

if __name__ == "__main__":
    main()
