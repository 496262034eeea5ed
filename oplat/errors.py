"""Errors that the CLI turns into one clear line and exit code 2."""


class OplatError(Exception):
    """Base class: a user-facing problem with the input, never a bug."""


class ModelLoadError(OplatError):
    """The model file is missing, corrupt, truncated or of an unknown format."""


class ShapeError(OplatError):
    """A tensor shape cannot be determined (dynamic dim without --input-shape, ...)."""


class ProfileError(OplatError):
    """A device profile is unknown, missing files or of an incompatible schema."""


class DatasetError(OplatError):
    """A dataset file is missing columns or holds malformed rows."""


def run_cli(prog: str, parser, argv=None, user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv`` and run the chosen command: user-facing errors become one line on
    stderr and exit code 2 (no traceback), Ctrl-C exit 130, a closed pipe exit 0."""
    import sys

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (OplatError, *user_errors) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
