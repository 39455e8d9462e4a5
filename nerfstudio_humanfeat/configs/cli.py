"""ns-train command lines: the dataparser is a subcommand, and its options must follow it."""

from __future__ import annotations

from typing import List, Sequence

DATAPARSER_PREFIX = "--pipeline.datamanager.dataparser."
DATAPARSER_NAMES = ("zju-mocap", "human36m", "renderpeople")


def with_dataparser(args: Sequence[str], dataparser: str = "zju-mocap") -> List[str]:
    """`args` with every dataparser option (and its values) moved after the dataparser subcommand, at the end.

    A dataparser name already in `args` is taken instead of `dataparser` (and moved to its place); without any
    dataparser option or name the arguments are returned unchanged (ns-train uses its default, zju-mocap).
    """
    rest: List[str] = []
    parser_args: List[str] = []
    chosen = None
    taking = False
    for arg in args:
        if arg in DATAPARSER_NAMES:
            chosen, taking = arg, False
        elif arg.startswith(DATAPARSER_PREFIX):
            parser_args.append(arg)
            taking = True
        elif arg.startswith("--"):
            rest.append(arg)
            taking = False
        else:
            (parser_args if taking else rest).append(arg)
    if chosen is None and not parser_args:
        return list(args)
    return [*rest, chosen or dataparser, *parser_args]
