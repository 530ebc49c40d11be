"""The public surface: ``__all__`` is sorted, complete and only names what exists."""

from __future__ import annotations

import inspect

import async_trace_delete


def test_all_is_sorted() -> None:
    """``__all__`` is kept in sorted order."""
    assert async_trace_delete.__all__ == sorted(async_trace_delete.__all__)


def test_all_has_no_duplicates() -> None:
    """Each name appears once."""
    assert len(set(async_trace_delete.__all__)) == len(async_trace_delete.__all__)


def test_every_name_in_all_exists() -> None:
    """Every name listed in ``__all__`` is an attribute of the package."""
    missing = [name for name in async_trace_delete.__all__ if not hasattr(async_trace_delete, name)]
    assert missing == []


def test_every_public_class_and_function_is_exported() -> None:
    """Public classes and functions defined in the package are all listed in ``__all__``."""
    defined_here = {
        name
        for name, member in vars(async_trace_delete).items()
        if not name.startswith("_")
        and (inspect.isclass(member) or inspect.isfunction(member))
        and getattr(member, "__module__", "").startswith("async_trace_delete")
    }
    assert defined_here
    assert defined_here - set(async_trace_delete.__all__) == set()


def test_exported_members_claim_the_public_package() -> None:
    """Exported classes live in private modules of the package, never in a foreign one."""
    for name in async_trace_delete.__all__:
        member = getattr(async_trace_delete, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__module__.startswith("async_trace_delete._"), name


def test_version_is_a_string() -> None:
    """``__version__`` is a non-empty string and exported."""
    assert isinstance(async_trace_delete.__version__, str)
    assert async_trace_delete.__version__
    assert "__version__" in async_trace_delete.__all__


def test_the_controller_seams_are_exported() -> None:
    """What a custom controller implements and the built-ins' settings are public names."""
    seams = {"ConcurrencyLimit", "FixedLimit", "LimitSettings", "Sizer", "SizerSettings"}
    assert seams <= set(async_trace_delete.__all__)
