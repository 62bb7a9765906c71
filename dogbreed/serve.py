"""`python -m dogbreed.serve`: the command; its code is `dogbreed.serving.server`, which needs the `serve`
extra (a core-only install says so in one line instead of an import traceback)."""

import sys

from dogbreed.errors import missing_extra, report_user_error

try:
    from dogbreed.serving.server import main
except ModuleNotFoundError as exc:
    if (hint := missing_extra(exc)) is None:
        raise
    report_user_error(hint)
    sys.exit(2)

if __name__ == "__main__":
    main()
