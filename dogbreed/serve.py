"""`python -m dogbreed.serve`: the command; its code is `dogbreed.serving.server`, which needs the `serve`
extra. Imported under `exit_on_user_error`, so that a core-only install says what to install in one line
instead of an import traceback."""

from dogbreed.errors import exit_on_user_error

with exit_on_user_error():
    from dogbreed.serving.server import main

if __name__ == "__main__":
    main()
