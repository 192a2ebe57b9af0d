"""Does a typed app use rooms? Read from its handlers' bytecode, before anything is served.

With `--workers N` and no backplane every process keeps its own rooms, so a broadcast would
reach only the members in its process: the command line refuses such an app, and asks for
`--redis`. Running the handlers to find out is not an option, so their code is read: a
room method (`join`, `leave`, `broadcast`, `members`, `presence`, `in_room`, `rooms`) loaded
from the handler's context parameter, in the handler, in the functions nested in it, or in a
function of the same module that the context is handed to (`_require_member(ctx, room)`),
followed a few calls deep. `app.broadcast` and `app.rooms` on the app itself count too.

What it cannot read (a callable without Python code, a context stored under another name
first) it does not count: the answer is a guard against a mistake, not a proof.
"""

from __future__ import annotations

import dis
import re
import types
from collections.abc import Callable, Iterator
from typing import Any

from .app import App
from .context import Context
from .rooms import LocalRooms

__all__ = ["ROOM_ATTRIBUTES", "uses_rooms"]

# The room methods of Context (and of App: `app.broadcast`, `app.rooms`).
ROOM_ATTRIBUTES = frozenset({"join", "leave", "broadcast", "members", "presence", "in_room", "rooms"})
_APP_ROOM_ATTRIBUTES = frozenset({"broadcast", "rooms"})

# Instructions that push a local, cell or free variable (3.10 to 3.14 spellings).
_LOAD_ONE = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW", "LOAD_DEREF", "LOAD_CLOSURE"})
_LOAD_TWO = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})  # 3.13+
_LOAD_GLOBAL = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_ATTRIBUTE = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_SKIPPED = frozenset({"EXTENDED_ARG", "CACHE", "NOP"})

_HELPER_DEPTH = 3  # calls followed from a handler into the module's own functions
_CONTEXT_ANNOTATION = re.compile(r"\bContext\b")


def uses_rooms(app: App) -> bool:
    """True when `app` joins, leaves, lists or broadcasts to rooms, or was given a backplane."""
    if not isinstance(app, App):
        return False  # a raw application has no rooms
    if app.has_backplane or not isinstance(app.rooms, LocalRooms):
        return True
    if app._on_member_lost is not None:  # a hook about room members
        return True
    hooks: list[tuple[Callable[..., Any] | None, int]] = [
        (app._on_connect, 0),
        (app._on_disconnect, 0),
        (app.bytes_handler, 1),
    ]
    hooks.extend((route.handler, 1) for route in app.router.routes.values())
    return any(func is not None and _calls_rooms(func, position, app) for func, position in hooks)


def _calls_rooms(func: Callable[..., Any], position: int, app: App) -> bool:
    """Does `func` use rooms through its positional parameter `position` (the context)?"""
    function, position = _python_function(func, position)
    if function is None:
        return False
    code = function.__code__
    if position >= code.co_argcount:
        return False
    return _function_uses_rooms(function, {code.co_varnames[position]}, app, set(), _HELPER_DEPTH)


def _python_function(func: Any, position: int) -> tuple[types.FunctionType | None, int]:
    """The Python function behind a handler, and where the context is among its parameters."""
    if isinstance(func, types.MethodType):  # `self` comes first
        func, position = func.__func__, position + 1
    elif not isinstance(func, types.FunctionType):
        call = type(func).__call__ if callable(func) else None  # a callable object
        func, position = call, position + 1
    func = getattr(func, "__wrapped__", func)  # functools.wraps
    return (func, position) if isinstance(func, types.FunctionType) else (None, position)


def _function_uses_rooms(
    function: types.FunctionType, contexts: set[str], app: App, seen: set[types.CodeType], depth: int
) -> bool:
    code = function.__code__
    if code in seen:
        return False
    seen.add(code)
    for inner in _code_objects(code):
        if _loads_room_attribute(inner, contexts, function.__globals__, app):
            return True
    if depth == 0:
        return False
    for helper in _module_helpers(function):
        parameters = _context_parameters(helper, contexts)
        if parameters and _function_uses_rooms(helper, parameters, app, seen, depth - 1):
            return True
    return False


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """`code` and every code object nested in it (closures, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _loads_room_attribute(
    code: types.CodeType, contexts: set[str], globals_: dict[str, Any], app: App
) -> bool:
    """A room attribute loaded right after a context variable (or the app) was pushed."""
    on_top: str | None = None  # "ctx" or "app": what the previous instruction pushed
    for instruction in dis.get_instructions(code):
        op = instruction.opname
        if op in _SKIPPED:
            continue
        if op in _ATTRIBUTE and on_top is not None:
            attributes = ROOM_ATTRIBUTES if on_top == "ctx" else _APP_ROOM_ATTRIBUTES
            if instruction.argval in attributes:
                return True
        on_top = _pushed(instruction, contexts, globals_, app)
    return False


def _pushed(
    instruction: dis.Instruction, contexts: set[str], globals_: dict[str, Any], app: App
) -> str | None:
    """ "ctx" when the instruction leaves a context variable on top of the stack, "app" for the app."""
    op, argval = instruction.opname, instruction.argval
    if op in _LOAD_ONE:
        return "ctx" if argval in contexts else None
    if op in _LOAD_TWO:  # pushes two; the second is on top
        return "ctx" if isinstance(argval, tuple) and argval[-1] in contexts else None
    if op in _LOAD_GLOBAL and isinstance(argval, str):
        return "app" if globals_.get(argval) is app else None
    return None


def _module_helpers(function: types.FunctionType) -> Iterator[types.FunctionType]:
    """Module-level functions of `function`'s own module that its code names."""
    module = function.__module__
    names: set[str] = set()
    for inner in _code_objects(function.__code__):  # globals loaded, not attribute names
        names.update(i.argval for i in dis.get_instructions(inner) if i.opname in _LOAD_GLOBAL)
    for name in sorted(names):
        helper = function.__globals__.get(name)
        if isinstance(helper, types.FunctionType) and helper.__module__ == module and helper is not function:
            yield helper


def _context_parameters(helper: types.FunctionType, contexts: set[str]) -> set[str]:
    """The parameters of `helper` that may receive the context: annotated `Context`, named
    like the caller's context, or not annotated at all (then nothing says they do not)."""
    code = helper.__code__
    count = code.co_argcount + code.co_kwonlyargcount
    annotations = getattr(helper, "__annotations__", {})
    found: set[str] = set()
    for name in code.co_varnames[:count]:
        annotation = annotations.get(name)
        if name in contexts or annotation is None or _is_context(annotation):
            found.add(name)
    return found


def _is_context(annotation: Any) -> bool:
    if isinstance(annotation, str):  # `from __future__ import annotations`
        return _CONTEXT_ANNOTATION.search(annotation) is not None
    return isinstance(annotation, type) and issubclass(annotation, Context)
