"""YAML loading that keeps line numbers and refuses duplicate keys.

``load_yaml`` returns plain Python values, except that mappings are :class:`LocDict` and
sequences :class:`LocList`, which remember the 1-based line of themselves and of each key or
item, so validators can point at ``file:line``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pipeline.errors import Location, RuleError

if TYPE_CHECKING:
    import yaml

# yaml is imported on the first load_yaml: rules taken from the rule cache need none


class LocDict(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LocList(list[Any]):
    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


@functools.cache
def _loader() -> Any:
    """The loader class: libyaml's parser where built in (about ten times faster); marks are
    the same."""
    import yaml

    class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        path = "<yaml>"

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
    return _Loader


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> LocDict:
    loader.flatten_mapping(node)
    out = LocDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            hint = ""
            if isinstance(key, bool):
                word = key_node.value
                hint = f"YAML reads {word!r} as {key}; quote it"
                if word.lower() == "on":
                    hint += " (an enrich join is written 'by:')"
            raise RuleError(
                f"mapping key {key_node.value!r} is not a text",
                Location(loader.path, line, key_node.start_mark.column + 1),
                hint,
            )
        if key in out:
            raise RuleError(
                f"duplicate key {key!r} (first at line {out.key_lines[key]})",
                Location(loader.path, line, key_node.start_mark.column + 1),
                "remove one of them",
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: Any, node: yaml.SequenceNode) -> LocList:
    out = LocList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


def load_yaml(text: str, path: str) -> Any:
    """Parse one YAML document; every YAML error becomes a located :class:`RuleError`."""
    import yaml

    loader_cls = type("_PathLoader", (_loader(),), {"path": path})
    try:
        loader = loader_cls(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except RuleError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        raise RuleError(f"invalid YAML: {exc.problem or exc.context}", loc) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"invalid YAML: {exc}", Location(path)) from None
    except RecursionError:
        raise RuleError("invalid YAML: nested too deeply", Location(path)) from None
