"""`python -m dogbreed.predict`: the command; its code is `dogbreed.serving.predict`."""

from dogbreed.serving.predict import main

if __name__ == "__main__":
    main()
